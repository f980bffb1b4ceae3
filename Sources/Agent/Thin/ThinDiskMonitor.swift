import Hypervisor
import Logging
import ServiceLifecycle
import VMPulseCore

/// Watches the configured thin disks. Each disk runs in its own task; this service routes
/// the backend's events to them: a VM's monitor connecting (agent start, a VM appearing,
/// a QEMU restart) binds the disks configured for it, and QEMU's `BLOCK_WRITE_THRESHOLD`,
/// ENOSPC `BLOCK_IO_ERROR` and `RESUME` (as the backend's typed events) go to the disks of that connection. Routing never
/// waits on a disk, so one disk's slow extension delays no other. No polling, unless
/// `thin.polling_interval` asks for it.
public final class ThinDiskMonitor: Service, Sendable {
    private let backend: any HypervisorBackend
    private let disks: [ThinDisk]
    private let pollingInterval: Double
    private let logger: Logger
    /// How long graceful shutdown waits for extensions in flight before it stops them.
    private let shutdownGrace: Duration
    private let deviceCheckInterval: Duration
    public let status: ThinStatusStore

    private let events: AsyncStream<MachineEvent>

    /// - Parameter events: the backend's events (a stream of `MachineEventHub` when other
    ///   services read them too); `bus`: where extensions are announced.
    public init(config: AgentConfig, backend: any HypervisorBackend, events: AsyncStream<MachineEvent>? = nil, bus: AgentEventBus? = nil,
                logger: Logger, shutdownGrace: Duration = .seconds(10), deviceCheckInterval: Duration = .seconds(5)) {
        let store = ThinStatusStore(bus: bus)
        self.events = events ?? backend.events
        self.status = store
        self.backend = backend
        self.logger = logger
        self.shutdownGrace = shutdownGrace
        self.deviceCheckInterval = deviceCheckInterval
        self.pollingInterval = config.thinPollingInterval
        disks = config.thinDisks.map { disk in
            let extender: any DiskExtender
            switch disk.backend {
            case .loop(let file):
                extender = LoopDeviceExtender(device: disk.device, file: file)
            case .command(let program, let arguments, let timeout):
                extender = CommandExtender(program: program, arguments: arguments, timeout: .milliseconds(Int64(timeout * 1000)),
                                           device: disk.device, logger: logger)
            }
            return ThinDisk(config: disk, extender: extender, backend: backend, store: store, logger: logger, polling: config.thinPollingInterval > 0)
        }
    }

    private enum Ended: Sendable { case disk, grace, timerCancelled }

    public func run() async throws {
        await withTaskGroup(of: Ended.self) { group in
            for disk in disks { group.addTask { await disk.run(); return .disk } }
            // Routing ends with the event stream, or on graceful shutdown.
            await cancelWhenGracefulShutdown { [self] in
                await withTaskGroup(of: Void.self) { routing in
                    routing.addTask { await self.route() }
                    if pollingInterval > 0 { routing.addTask { await self.poll() } }
                    if !disks.isEmpty { routing.addTask { await self.checkDevices() } }
                    await routing.next()
                    routing.cancelAll()
                }
            }
            // Every disk finishes the input in hand; an extension in flight gets the grace
            // period, then is stopped (a command is killed with its process group).
            for disk in disks { disk.finish() }
            let grace = shutdownGrace
            group.addTask { (try? await Task.sleep(for: grace)) != nil ? .grace : .timerCancelled }
            var running = disks.count
            while running > 0, let ended = await group.next() {
                switch ended {
                case .disk: running -= 1
                case .grace:
                    logger.warning("thin disks: an extension is still running \(grace) after the stop; stopping it")
                    group.cancelAll()
                case .timerCancelled: break
                }
            }
            group.cancelAll()
        }
    }

    /// Hands each event to the disks it concerns. Which disks belong to which connection
    /// is this loop's own table (`ThinBindings`), so bindings follow the events' order exactly.
    private func route() async {
        var table = ThinBindings(vms: disks.map(\.config.vm))
        for await event in events {
            let connection = event.connection
            switch event.kind {
            case .connected(let name, let uuid, _):
                // The identity can be learned late (the monitor was slow to answer): the
                // table lets go of disks bound under the name the socket gave.
                apply(table.connected(connection, .init(socket: event.machine, name: name, uuid: uuid)))
            case .disconnected:
                apply(table.disconnected(connection))
            case .writeThreshold(let node):
                let mine = table.disks(of: connection).map { disks[$0] }
                if mine.isEmpty { logger.debug("write threshold event on \(event.machine), where no thin disk is watched") }
                for disk in mine { disk.send(.thresholdCrossed(connection: connection, node: node, at: event.receivedAt)) }
            case .ioError(let node, let device, noSpace: true, paused: true):
                for disk in table.disks(of: connection).map({ disks[$0] }) {
                    disk.send(.pausedNoSpace(connection: connection, node: node, device: device, at: event.receivedAt))
                }
            case .resumed:
                for disk in table.disks(of: connection).map({ disks[$0] }) { disk.send(.vmResumed(connection: connection)) }
            case .ioError, .paused:
                continue
            }
        }
    }

    private func apply(_ changes: [Int: [ThinBindings.Change]]) {
        for (index, list) in changes.sorted(by: { $0.key < $1.key }) {
            let disk = disks[index]
            for change in list {
                switch change {
                case .unbind(let connection):
                    disk.send(.disconnected(connection: connection))
                case .bind(let connection, let claim):
                    disk.send(.connected(socket: claim.socket, connection: connection, name: claim.name, uuid: claim.uuid))
                case .contested(let sockets) where sockets.isEmpty:
                    disk.send(.contested(sockets: []))
                case .contested(let sockets):
                    logger.error("thin disk \(disk.config.label): \(sockets.count) running VMs answer to '\(disk.config.vm)' (\(sockets.joined(separator: ", "))); not extended for either until one is gone")
                    disk.send(.contested(sockets: sockets))
                }
            }
        }
    }

    /// Every `deviceCheckInterval`, each disk waiting at its mark checks that its device is
    /// still there (one stat), so that a device that vanished shows in `/v1/health` before
    /// the guest needs the room.
    private func checkDevices() async {
        while (try? await Task.sleep(for: deviceCheckInterval)) != nil {
            for disk in disks { disk.send(.checkDevice) }
        }
    }

    /// Polling mode (for QEMU builds without the event, and for comparison): every disk
    /// reads its allocation every interval.
    private func poll() async {
        let interval = Duration.milliseconds(Int64(pollingInterval * 1000))
        while (try? await Task.sleep(for: interval)) != nil {
            for disk in disks { disk.send(.poll) }
        }
    }
}
