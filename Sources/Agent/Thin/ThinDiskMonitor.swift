import Hypervisor
import Logging
import QMP
import ServiceLifecycle
import VMPulseCore

/// Watches the configured thin disks: binds each to its VM when the VM's monitor
/// connects (on agent start, when a VM appears, after a QEMU restart), and routes
/// QEMU's `BLOCK_WRITE_THRESHOLD` and ENOSPC `BLOCK_IO_ERROR` events to the disk they
/// are about. No polling, unless `thin.polling_interval` asks for it.
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
        for disk in disks { await disk.tick() }  // publish the initial (unset) status
        guard !disks.isEmpty else {
            // Nothing to watch; still drain the events so they do not pile up.
            await cancelWhenGracefulShutdown { [backend] in for await _ in backend.events {} }
            return
        }
        await cancelWhenGracefulShutdown { [self] in
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await event in self.backend.events { await self.route(event) } }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(500))
                        for disk in self.disks { await disk.tick() }
                    }
                }
                if pollingInterval > 0 {
                    let interval = Duration.milliseconds(Int64(pollingInterval * 1000))
                    group.addTask {
                        while !Task.isCancelled {
                            try? await Task.sleep(for: interval)
                            for disk in self.disks { await disk.poll() }
                        }
                    }
                }
                await group.next()
                group.cancelAll()
            }
        }
    }

    private func route(_ event: MachineEvent) async {
        let arrived = MonotonicTime.now()
        switch event.kind {
        case .connected:
            guard let (name, uuid) = await backend.identity(socketPath: event.socketPath) else { return }
            for disk in disks where disk.config.vm == name || disk.config.vm == uuid {
                await disk.bind(socket: event.socketPath, name: name, uuid: uuid)
            }
        case .disconnected:
            for disk in disks where await disk.boundSocket == event.socketPath { await disk.unbind() }
        case .qmp(let e) where e.name == "BLOCK_WRITE_THRESHOLD":
            let node = e.data["node-name"]?.stringValue
            var handled = false
            for disk in disks where await disk.boundSocket == event.socketPath {
                if await disk.matches(node: node, device: nil) {
                    handled = true
                    await disk.thresholdCrossed(at: arrived)
                }
            }
            if !handled { logger.debug("write threshold event for node \(node ?? "?") of \(event.socketPath), which no thin disk watches") }
        case .qmp(let e) where e.name == "BLOCK_IO_ERROR":
            guard e.data["nospace"]?.boolValue == true, e.data["action"]?.stringValue == "stop" else { return }
            let node = e.data["node-name"]?.stringValue
            let device = e.data["device"]?.stringValue
            for disk in disks where await disk.boundSocket == event.socketPath {
                if await disk.matches(node: node, device: device) { await disk.pausedNoSpace(at: arrived) }
            }
        default:
            break
        }
    }
}
