import Hypervisor
import Logging
import QMP
import ServiceLifecycle
import VMPulseCore

/// Watches the configured thin disks. Each disk runs in its own task; this service routes
/// the backend's events to them: a VM's monitor connecting (agent start, a VM appearing,
/// a QEMU restart) binds the disks configured for it, and QEMU's `BLOCK_WRITE_THRESHOLD`
/// and ENOSPC `BLOCK_IO_ERROR` go to the disks of that VM. Routing never waits on a disk,
/// so one disk's slow extension delays no other. No polling, unless
/// `thin.polling_interval` asks for it.
public final class ThinDiskMonitor: Service, Sendable {
    private let backend: QMPBackend
    private let disks: [ThinDisk]
    private let pollingInterval: Double
    private let logger: Logger
    public let status: ThinStatusStore

    public init(config: AgentConfig, backend: QMPBackend, logger: Logger) {
        let store = ThinStatusStore()
        self.status = store
        self.backend = backend
        self.logger = logger
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

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for disk in disks { group.addTask { await disk.run() } }
            // Routing ends with the event stream, or on graceful shutdown; then every disk
            // finishes the input in hand and stops.
            await cancelWhenGracefulShutdown { [self] in
                await withTaskGroup(of: Void.self) { routing in
                    routing.addTask { await self.route() }
                    if pollingInterval > 0 { routing.addTask { await self.poll() } }
                    await routing.next()
                    routing.cancelAll()
                }
            }
            for disk in disks { disk.finish() }
        }
    }

    /// Hands each event to the disks it concerns. The table of which disks belong to which
    /// socket is this loop's own, so bindings follow the events' order exactly.
    private func route() async {
        var bound: [String: [ThinDisk]] = [:]
        for await event in backend.events {
            let socket = event.socketPath
            switch event.kind {
            case .connected(let name, let uuid):
                let mine = disks.filter { $0.config.vm == name || (!uuid.isEmpty && $0.config.vm == uuid) }
                bound[socket] = mine.isEmpty ? nil : mine
                for disk in mine { disk.send(.connected(socket: socket, connection: event.connection, name: name, uuid: uuid)) }
            case .disconnected:
                for disk in bound[socket] ?? [] { disk.send(.disconnected(socket: socket, connection: event.connection)) }
            case .qmp(let e) where e.name == "BLOCK_WRITE_THRESHOLD":
                let node = e.data["node-name"]?.stringValue
                let mine = bound[socket] ?? []
                if mine.isEmpty { logger.debug("write threshold event for node \(node ?? "?") of \(socket), which no thin disk watches") }
                for disk in mine { disk.send(.thresholdCrossed(socket: socket, node: node, at: event.receivedAt)) }
            case .qmp(let e) where e.name == "BLOCK_IO_ERROR":
                guard e.data["nospace"]?.boolValue == true, e.data["action"]?.stringValue == "stop" else { continue }
                let node = e.data["node-name"]?.stringValue
                let device = e.data["device"]?.stringValue ?? ""
                for disk in bound[socket] ?? [] { disk.send(.pausedNoSpace(socket: socket, node: node, device: device, at: event.receivedAt)) }
            default:
                continue
            }
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
