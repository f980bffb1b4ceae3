import Hypervisor
import Logging
import QMP
import VMPulseCore

/// One configured thin disk: binds to its VM when the VM's monitor connects, feeds
/// events to its `ThinDiskMachine`, and performs what the machine decides (set the
/// mark, extend, verify, re-arm, resume). An actor: one disk's events are handled one
/// at a time, and an extension in flight absorbs any event that comes meanwhile.
actor ThinDisk {
    let config: ThinDiskConfig
    private let extender: any DiskExtender
    private let backend: QMPBackend
    private let store: ThinStatusStore
    private let logger: Logger
    private let polling: Bool

    private var machine: ThinDiskMachine?
    private var socket: String?
    private var vmName: String?
    private var vmUUID: String?
    private var reading: ThinDiskReading?
    private var eventArrived: Double?
    private var extensionStarted: Double?
    private var cycles: [Double] = []
    private var unboundReason: String?

    init(config: ThinDiskConfig, extender: any DiskExtender, backend: QMPBackend, store: ThinStatusStore, logger: Logger, polling: Bool) {
        self.config = config
        self.extender = extender
        self.backend = backend
        self.store = store
        self.logger = logger
        self.polling = polling
    }

    /// The socket of the VM this disk is bound to.
    var boundSocket: String? { socket }

    func matches(node: String?, device: String?) -> Bool {
        guard let reading else { return false }
        return (node != nil && (node == reading.node || node == reading.formatNode)) || (device != nil && !(device ?? "").isEmpty && device == reading.drive)
    }

    func bind(socket: String, name: String, uuid: String) async {
        self.socket = socket
        vmName = name
        vmUUID = uuid
        unboundReason = nil
        logger.info("thin disk \(config.label): bound to \(name)")
        await perform([.observe])
    }

    func unbind() {
        socket = nil
        reading = nil
        unboundReason = "the VM's monitor is not connected"
        machine?.reset()
        publish()
    }

    func thresholdCrossed(at time: Double) async {
        if eventArrived == nil { eventArrived = time }
        // In polling mode the mark is only a timestamp of the crossing, for comparison;
        // the next poll acts on it.
        guard !polling else { return }
        await feed(.thresholdCrossed)
    }

    func pausedNoSpace(at time: Double) async {
        if eventArrived == nil { eventArrived = time }  // a cycle runs from the first sign: the crossing, if it came
        logger.warning("thin disk \(config.label): \(vmName ?? config.vm) paused, out of space")
        await feed(.pausedNoSpace)
    }

    func tick() async {
        guard socket != nil, case .backoff? = machine?.state else { return }
        await feed(.tick)
    }

    /// Polling mode: read the allocation and act on it, as if nobody sent events.
    func poll() async {
        guard socket != nil else { return }
        await perform([.observe])
    }

    private func feed(_ event: ThinDiskMachine.Event) async {
        guard var m = machine else {
            if case .thresholdCrossed = event { await perform([.observe]) }
            return
        }
        let actions = m.handle(event, now: MonotonicTime.now())
        machine = m
        publish()
        await perform(actions)
    }

    private func perform(_ actions: [ThinDiskMachine.Action]) async {
        for action in actions {
            switch action {
            case .observe: await observe()
            case .setMark(let mark): await setMark(mark)
            case .clearMark: await setMark(0)
            case .extend(let size): await extend(to: size)
            case .resumeIfPausedOnIOError: await resume()
            }
        }
        publish()
    }

    private func observe() async {
        guard let socket else { return }
        let found: ThinDiskReading?
        do throws(QMPError) {
            found = try await backend.readThinDisk(socketPath: socket, drive: config.drive, node: config.node)
        } catch {
            await feed(.observationFailed(reason: "\(error)"))
            return
        }
        guard let found else {
            let what = config.drive.map { "drive '\($0)'" } ?? "node '\(config.node ?? "")'"
            await feedOrCreate(.unusable(reason: "\(vmName ?? config.vm) has no \(what)"), capacity: nil)
            return
        }
        reading = found
        let physical: UInt64
        do throws(ExtenderError) {
            physical = try extender.currentSize()
        } catch {
            await feedOrCreate(.observationFailed(reason: error.message), capacity: found.capacity)
            return
        }
        await feedOrCreate(.observed(physical: physical, allocation: found.allocation), capacity: found.capacity)
    }

    /// The machine needs the disk's maximum, which by default comes from its capacity.
    private func feedOrCreate(_ event: ThinDiskMachine.Event, capacity: UInt64?) async {
        if machine == nil {
            let mib: UInt64 = 1 << 20
            let maximum = config.maxSizeMiB.map { UInt64($0) * mib } ?? capacity.map { $0 + $0 / 10 }
            guard let maximum else {
                var m = ThinDiskMachine(policy: ThinPolicy(chunk: 1, utilizationPercent: 0, maximum: 0))
                _ = m.handle(.unusable(reason: "the disk's capacity is unknown; set max_size_mib"), now: 0)
                machine = m
                publish()
                return
            }
            machine = ThinDiskMachine(policy: ThinPolicy(chunk: UInt64(config.chunkMiB) * mib, utilizationPercent: UInt64(config.utilizationPercent), maximum: maximum))
        }
        await feed(event)
    }

    private func setMark(_ mark: UInt64) async {
        guard let socket, let node = reading?.node else { return }
        do throws(QMPError) {
            _ = try await backend.execute(socketPath: socket, "block-set-write-threshold", arguments: ["node-name": .string(node), "write-threshold": .uint(mark)])
            if mark > 0 { finishCycle(mark: mark) }
        } catch {
            if case .commandFailed = error {
                await feed(.unusable(reason: "QEMU refused the write threshold on node \(node): \(error)"))
            } else {
                await feed(.observationFailed(reason: "\(error)"))
            }
        }
    }

    /// The event that started this round has led to a new mark: that is one cycle.
    private func finishCycle(mark: UInt64) {
        guard let arrived = eventArrived else { return }
        eventArrived = nil
        let ms = (MonotonicTime.now() - arrived) * 1000
        cycles.append(ms)
        if cycles.count > 1024 { cycles.removeFirst(cycles.count - 1024) }
        logger.info("thin disk \(config.label): next mark at \(mark) bytes, \(String(format2: ms)) ms after the event")
    }

    private func extend(to size: UInt64) async {
        guard let reading else { return }
        let before = machine?.physical ?? 0
        let request = ExtensionRequest(
            vmName: vmName ?? config.vm, vmUUID: vmUUID ?? "", disk: reading.drive, node: reading.node,
            device: config.device, currentSize: before, requestedSize: size)
        let started = MonotonicTime.now()
        do throws(ExtenderError) {
            try await extender.extend(to: size, request: request)
            let now = try extender.currentSize()
            logger.info("thin disk \(config.label): extended \(before) -> \(now) bytes (asked \(size)) in \(String(format2: (MonotonicTime.now() - started) * 1000)) ms")
            await feed(.extended(physical: now))
        } catch {
            logger.error("thin disk \(config.label): extension to \(size) bytes failed: \(error.message)")
            await feed(.extensionFailed(reason: error.message))
        }
    }

    private func resume() async {
        guard let socket else { return }
        do throws(QMPError) {
            let status = try await backend.execute(socketPath: socket, "query-status")["status"]?.stringValue ?? ""
            guard status == "io-error" else {
                logger.info("thin disk \(config.label): \(vmName ?? config.vm) is '\(status)', not paused on an I/O error: left alone")
                return
            }
            _ = try await backend.execute(socketPath: socket, "cont")
            logger.notice("thin disk \(config.label): resumed \(vmName ?? config.vm) after the extension")
        } catch {
            logger.error("thin disk \(config.label): cannot resume \(vmName ?? config.vm): \(error)")
        }
    }

    private func publish() {
        let m = machine
        var reason: String?
        switch m?.state {
        case .disabled(let r)?: reason = r
        case .backoff(_, let r)?: reason = r
        default: reason = socket == nil ? unboundReason ?? "waiting for the VM" : nil
        }
        store.publish(ThinDiskStatus(
            label: config.label, vm: config.vm, vmName: vmName, vmUUID: vmUUID, drive: config.drive ?? reading?.drive ?? "",
            node: reading?.node ?? config.node, state: m?.state.name ?? "unset",
            reason: reason, mark: m?.mark ?? 0, physical: m?.physical ?? 0, maximum: m?.policy.maximum,
            extensions: m?.extensions ?? 0, failures: m?.failures ?? 0, pausesRecovered: m?.pausesRecovered ?? 0,
            lastExtensionMs: m?.lastExtensionSeconds.map { $0 * 1000 }, lastCycleMs: cycles.last, recentCyclesMs: cycles))
    }
}

extension String {
    /// Two decimals, without Foundation's String(format:).
    init(format2 value: Double) {
        let scaled = (value * 100).rounded()
        let whole = Int64(scaled / 100)
        let cents = Int64(abs(scaled).truncatingRemainder(dividingBy: 100))
        self = "\(whole).\(cents < 10 ? "0" : "")\(cents)"
    }
}
