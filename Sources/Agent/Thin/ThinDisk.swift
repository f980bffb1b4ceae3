import Hypervisor
import Logging
import Synchronization
import VMPulseCore

/// One configured thin disk. It takes its inputs one at a time from a mailbox, in a task
/// of its own, so one disk's trouble holds up no other. It feeds them to its
/// `ThinDiskMachine` and performs what the machine decides: read the disk, set the mark,
/// extend, resume the guest, retry later. An extension runs in a task of its own and
/// reports back through the mailbox, so that what happens meanwhile (a crossing, the guest
/// pausing, the VM going away) reaches the machine while it is extending.
actor ThinDisk {
    enum Input: Sendable {
        /// The monitor of a VM this disk belongs to connected (agent start, VM start, QEMU
        /// restart), or its identity became known.
        case connected(socket: String, connection: Int, name: String, uuid: String)
        case disconnected(connection: Int)
        /// Several running VMs answer to the disk's `vm`: bound to none of them (`ThinBindings`);
        /// no sockets: that ended.
        case contested(sockets: [String])
        /// BLOCK_WRITE_THRESHOLD on `node`.
        case thresholdCrossed(connection: Int, node: String?, at: Double)
        /// BLOCK_IO_ERROR with nospace on `node` / `device`.
        case pausedNoSpace(connection: Int, node: String?, device: String, at: Double)
        /// QEMU's RESUME: the VM runs again.
        case vmResumed(connection: Int)
        case extensionFinished(Result<UInt64, ExtenderError>)
        case retryDue
        /// Polling mode: read the disk and act on what it says.
        case poll
        /// Is the device still there? (A disk waiting at its mark would not notice otherwise
        /// until the guest writes past it.)
        case checkDevice
    }

    nonisolated let config: ThinDiskConfig
    private let extender: any DiskExtender
    private let backend: any HypervisorBackend
    private let store: ThinStatusStore
    private let logger: Logger
    private let polling: Bool
    private nonisolated let inbox: AsyncStream<Input>
    private nonisolated let mailbox: AsyncStream<Input>.Continuation
    private nonisolated let pollQueued = Mutex(false)
    private nonisolated let checkQueued = Mutex(false)

    private var machine: ThinDiskMachine
    private var socket: String?
    private var connection: Int?
    private var vmName: String?
    private var vmUUID: String?
    /// Why the disk is bound to no VM although its VM runs: several claim it.
    private var contested: String?
    private var reading: ThinDiskReading?
    /// QEMU's io-status is trusted only on the first read of a connection: it stays
    /// `nospace` after `cont` on `-blockdev` drives.
    private var firstRead = false
    /// When the event that started the current cycle arrived.
    private var eventArrived: Double?
    /// Set when `cont` was sent, until QEMU's RESUME event: the no-space events of the
    /// pause just ended (one per failed request) come before it, and are not new pauses.
    private var resumeSentAt: Double?
    private var extensionTask: Task<Void, Never>?
    private var retryTask: Task<Void, Never>?
    private var cycles: [Double] = []
    /// `machine.failures` when the disk last had its mark set (or was bound): the failures
    /// since then are in a row.
    private var failuresAtLastGood = 0

    init(config: ThinDiskConfig, extender: any DiskExtender, backend: any HypervisorBackend, store: ThinStatusStore, logger: Logger, polling: Bool) {
        self.config = config
        self.extender = extender
        self.backend = backend
        self.store = store
        self.logger = logger
        self.polling = polling
        let mib: UInt64 = 1 << 20
        machine = ThinDiskMachine(policy: ThinPolicy(
            chunk: UInt64(config.chunkMiB) * mib, utilizationPercent: UInt64(config.utilizationPercent),
            maximum: config.maxSizeMiB.map { UInt64($0) * mib }))
        (inbox, mailbox) = AsyncStream<Input>.makeStream()
    }

    /// Hands the disk an input; never waits.
    nonisolated func send(_ input: Input) {
        if case .poll = input {
            // A disk still busy with the last poll does not pile up more.
            guard pollQueued.withLock({ queued in defer { queued = true }; return !queued }) else { return }
        }
        if case .checkDevice = input {
            guard checkQueued.withLock({ queued in defer { queued = true }; return !queued }) else { return }
        }
        mailbox.yield(input)
    }

    /// No more inputs: `run` returns once the extension in flight, if any, has ended.
    nonisolated func finish() { mailbox.finish() }

    /// Handles inputs until `finish`; cancelled, it stops an extension in flight.
    func run() async {
        publish()
        for await input in inbox { await handle(input) }
        retryTask?.cancel()
        if let extensionTask {
            await withTaskCancellationHandler { await extensionTask.value } onCancel: { extensionTask.cancel() }
        }
    }

    private func handle(_ input: Input) async {
        switch input {
        case .connected(let socket, let connection, let name, let uuid):
            if self.connection != connection { logger.info("thin disk \(config.label): bound to \(name) (\(socket))") }
            self.socket = socket
            self.connection = connection
            contested = nil
            vmName = name
            vmUUID = uuid
            reading = nil
            firstRead = true
            eventArrived = nil
            resumeSentAt = nil
            machine.reset()
            failuresAtLastGood = machine.failures
            await perform([.observe])
        case .disconnected(let connection):
            guard connection == self.connection else { return }
            logger.info("thin disk \(config.label): \(vmName ?? config.vm) is gone; waiting for it")
            socket = nil
            self.connection = nil
            reading = nil
            eventArrived = nil
            machine.reset()
            publish()
        case .contested(let sockets) where sockets.isEmpty:
            contested = nil
            publish()
        case .contested(let sockets):
            contested = "\(sockets.count) running VMs answer to '\(config.vm)' (\(sockets.joined(separator: ", "))): "
                + "not extended for either until one is gone (give each VM a name and UUID of its own)"
            publish()
        case .thresholdCrossed(let connection, let node, let at):
            guard connection == self.connection, let reading, node == reading.node || node == reading.formatNode else { return }
            if eventArrived == nil { eventArrived = at }
            // Polling mode keeps the event only as the time of the crossing, to measure
            // how long polling takes to react; the next poll acts.
            if !polling { await feed(.thresholdCrossed) }
        case .pausedNoSpace(let connection, let node, let device, let at):
            guard connection == self.connection, let reading,
                  node == reading.formatNode || node == reading.node || (!device.isEmpty && device == reading.drive) else { return }
            // Still the pause just resumed (RESUME not seen yet; 10 s at most, should it be lost).
            if let sent = resumeSentAt, at - sent < 10 { return }
            if eventArrived == nil { eventArrived = at }
            if !machine.pausedForSpace {
                logger.warning("thin disk \(config.label): \(vmName ?? config.vm) paused, out of space on the device")
            }
            await feed(.pausedNoSpace)
        case .vmResumed(let connection):
            if connection == self.connection { resumeSentAt = nil }
        case .extensionFinished(let result):
            extensionTask = nil
            switch result {
            case .success(let size): await feed(.extended(physical: size))
            case .failure(let error): await feed(.extensionFailed(reason: error.message))
            }
        case .retryDue:
            await feed(.retryDue)
        case .poll:
            pollQueued.withLock { $0 = false }
            if socket != nil { await perform([.observe]) }
        case .checkDevice:
            checkQueued.withLock { $0 = false }
            guard socket != nil, case .set = machine.state else { return }
            do throws(ExtenderError) {
                _ = try await extender.currentSize()
            } catch {
                logger.error("thin disk \(config.label): \(error.message); it cannot be extended until the device is back")
                await feed(.observationFailed(reason: error.message))
            }
        }
    }

    private func feed(_ event: ThinDiskMachine.Event) async {
        let actions = machine.handle(event, now: MonotonicTime.now())
        publish()
        await perform(actions)
    }

    private func perform(_ actions: [ThinDiskMachine.Action]) async {
        for (i, action) in actions.enumerated() {
            // An action that failed put the disk in backoff: the rest waits for the retry.
            if i > 0, case .backoff = machine.state { break }
            switch action {
            case .observe: await observe()
            case .setMark(let mark): await setMark(mark)
            case .clearMark: await setMark(0)
            case .extend(let size): startExtension(to: size)
            case .resumeIfPausedOnIOError: await resume()
            case .scheduleRetry(let at): scheduleRetry(at: at)
            }
        }
        publish()
    }

    private func observe() async {
        guard let socket else { return }
        let found: ThinDiskReading?
        do throws(MachineError) {
            found = try await backend.readThinDisk(machine: socket, drive: config.drive, node: config.node)
        } catch {
            await feed(.observationFailed(reason: "cannot read the disk: \(error)"))
            return
        }
        guard let found else {
            let what = config.drive.map { "drive '\($0)'" } ?? "node '\(config.node ?? "")'"
            logger.error("thin disk \(config.label): \(vmName ?? config.vm) has no \(what); disabled until the VM restarts")
            await feed(.unusable(reason: "\(vmName ?? config.vm) has no \(what)"))
            return
        }
        reading = found
        let physical: UInt64
        do throws(ExtenderError) {
            physical = try await extender.currentSize()
        } catch {
            await feed(.observationFailed(reason: error.message))
            return
        }
        let noSpace = firstRead && found.noSpace
        firstRead = false
        if noSpace && !machine.pausedForSpace {
            logger.warning("thin disk \(config.label): \(vmName ?? config.vm) is paused out of space on the device (QEMU's status and io-status)")
        }
        await feed(.observed(physical: physical, allocation: found.allocation, capacity: found.capacity, noSpace: noSpace))
    }

    private func setMark(_ mark: UInt64) async {
        guard let socket, let node = reading?.node else { return }
        do throws(MachineError) {
            try await backend.setWriteThreshold(machine: socket, node: node, bytes: mark)
            if mark > 0 { finishCycle(mark: mark) }
        } catch {
            if error.kind == .refused {
                logger.error("thin disk \(config.label): the write threshold on node \(node) was refused: \(error); disabled until the VM restarts")
                await feed(.unusable(reason: "the write threshold on node \(node) was refused: \(error)"))
            } else {
                await feed(.observationFailed(reason: "cannot set the mark: \(error)"))
            }
        }
    }

    /// The event that started this round has led to a new mark: that is one cycle.
    private func finishCycle(mark: UInt64) {
        guard let arrived = eventArrived else {
            logger.info("thin disk \(config.label): mark at \(mark) bytes (device \(machine.physical) bytes)")
            return
        }
        eventArrived = nil
        let ms = (MonotonicTime.now() - arrived) * 1000
        cycles.append(ms)
        if cycles.count > 1024 { cycles.removeFirst(cycles.count - 1024) }
        logger.info("thin disk \(config.label): next mark at \(mark) bytes, \(String(format2: ms)) ms after the event")
    }

    /// Grows the device in a task of its own; the result comes back through the mailbox.
    private func startExtension(to size: UInt64) {
        let before = machine.physical
        let request = ExtensionRequest(
            vmName: vmName ?? config.vm, vmUUID: vmUUID ?? "", disk: reading?.drive ?? config.drive ?? "", node: reading?.node ?? config.node ?? "",
            device: config.device, currentSize: before, requestedSize: size)
        let (extender, logger, label) = (self.extender, self.logger, config.label)
        let mailbox = self.mailbox
        extensionTask = Task {
            let started = MonotonicTime.now()
            let result: Result<UInt64, ExtenderError>
            do throws(ExtenderError) {
                try await extender.extend(to: size, request: request)
                let now = try await extender.currentSize()
                logger.info("thin disk \(label): extended \(before) -> \(now) bytes (asked \(size)) in \(String(format2: (MonotonicTime.now() - started) * 1000)) ms")
                result = .success(now)
            } catch {
                logger.error("thin disk \(label): extension to \(size) bytes failed: \(error.message)")
                result = .failure(error)
            }
            mailbox.yield(.extensionFinished(result))
        }
    }

    /// Resumes the guest if it is paused on an I/O error; a guest paused for another
    /// reason (an operator's `stop`, a migration) is left alone.
    private func resume() async {
        guard let socket else { return }
        do throws(MachineError) {
            let status = try await backend.runState(machine: socket)
            guard status == .ioError else {
                logger.info("thin disk \(config.label): \(vmName ?? config.vm) is '\(status)', not paused on an I/O error: left alone")
                await feed(.notPaused)
                return
            }
            resumeSentAt = MonotonicTime.now()
            try await backend.resume(machine: socket)
            logger.notice("thin disk \(config.label): resumed \(vmName ?? config.vm) after the extension")
            await feed(.resumed)
        } catch {
            resumeSentAt = nil
            logger.error("thin disk \(config.label): cannot resume \(vmName ?? config.vm): \(error)")
            await feed(.observationFailed(reason: "cannot resume the guest: \(error)"))
        }
    }

    private func scheduleRetry(at time: Double) {
        retryTask?.cancel()
        let delay = max(0, time - MonotonicTime.now())
        if case .backoff(_, let reason) = machine.state {
            logger.warning("thin disk \(config.label): \(reason); trying again in \(String(format2: delay)) s")
        }
        // Rounded up: a timer that woke a hair early would only be set again.
        let sleep = Duration.milliseconds(Int64((delay * 1000).rounded(.up)) + 1)
        let mailbox = self.mailbox
        retryTask = Task {
            guard (try? await Task.sleep(for: sleep)) != nil else { return }
            mailbox.yield(.retryDue)
        }
    }

    /// Why the disk cannot do its work, if it cannot: disabled for a reason other than
    /// being at its maximum (no such drive or node, a mark QEMU refuses, an unknown size),
    /// at its maximum with the guest paused out of space, or failing
    /// `ThinDiskStatus.failuresBeforeProblem` times in a row (a missing device, an extension
    /// program that keeps failing). A disk whose VM is not running is no problem.
    private func problem() -> String? {
        if let contested, socket == nil { return contested }
        switch machine.state {
        case .disabled(let reason):
            let atMaximum = machine.maximum.map { machine.physical >= $0 } ?? false
            return atMaximum && !machine.pausedForSpace ? nil : reason
        case .backoff(_, let reason):
            let inARow = machine.failures - failuresAtLastGood
            return inARow >= ThinDiskStatus.failuresBeforeProblem ? "\(reason) (failed \(inARow) times in a row)" : nil
        default:
            return nil
        }
    }

    private func publish() {
        if case .set = machine.state { failuresAtLastGood = machine.failures }
        var reason: String?
        switch machine.state {
        case .disabled(let r): reason = r
        case .backoff(_, let r): reason = r
        default: reason = socket == nil ? contested ?? "the VM's monitor is not connected" : nil
        }
        store.publish(ThinDiskStatus(
            label: config.label, vm: config.vm, vmName: vmName, vmUUID: vmUUID, drive: reading?.drive ?? config.drive ?? "",
            node: reading?.node ?? config.node, state: machine.state.name, reason: reason,
            mark: machine.state.name == "set" ? machine.mark : nil, physical: machine.physical, maximum: machine.maximum,
            extensions: machine.extensions, failures: machine.failures, pausesRecovered: machine.pausesRecovered,
            pausedForSpace: machine.pausedForSpace,
            lastExtensionMs: machine.lastExtensionSeconds.map { $0 * 1000 }, lastCycleMs: cycles.last, recentCyclesMs: cycles,
            problem: problem()))
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
