import Logging
import QMP
import VMPulseCore

/// The backend that talks to each QEMU directly through a monitor socket of its own.
///
/// Every VM gives vmpulse its own monitor (`-qmp unix:DIR/NAME.sock,server=on,wait=off`;
/// QEMU accepts several `-qmp` options, and a monitor socket serves one client
/// at a time). The backend watches the socket directory: a socket that appears
/// is a VM, a socket that goes away (or that nothing listens on) is dropped.
/// Every VM is collected in its own task within `timeout`, so a stuck QEMU
/// comes back marked unresponsive without delaying the others.
public actor QMPBackend: HypervisorBackend {
    public struct Options: Sendable {
        /// Where the monitor sockets are.
        public var socketDirectory: String = "/run/vmpulse/qmp"
        /// The most one VM may take to connect and answer a stats pass.
        public var timeout: Duration = .seconds(2)
        /// The period, in seconds, at which the guest's balloon driver reports its
        /// memory figures; vmpulse sets it on a balloon that has none (0: leave it alone).
        public var balloonStatsPeriod: Int = 5
        public var client = QMPClientOptions()

        public init() {}
    }

    public nonisolated let name = "qmp"
    public nonisolated let supportedGroups: Set<StatsGroup> = [.state, .cpuTotal, .balloon, .vcpu, .interface, .block, .io, .iothread]
    public nonisolated let options: Options
    private let logger: Logger
    private(set) var monitors: [String: QMPMachine] = [:]
    /// Open guest-agent connections, by machine (see QMPGuestAgent.swift).
    var guestAgents: [String: GuestAgentClient] = [:]
    let guestAgentGate = GuestAgentGate()
    /// Sockets nothing listened on (a QEMU that was killed leaves its socket behind): not
    /// tried again, nor reported again, until a new socket replaces the file.
    private var dead: [String: (stamp: SocketDirectory.Stamp, since: Double)] = [:]
    /// The socket files already reported gone, so that a retry that finds one still dead
    /// is not logged again.
    private var reportedDead: [String: SocketDirectory.Stamp] = [:]
    /// A dead socket is tried again after this long (seconds), quietly: a QEMU may have
    /// been caught between bind() and listen(), when its socket refuses connections.
    static let deadRetry: Double = 30
    private let eventSink: AsyncStream<MachineEvent>.Continuation
    /// Every VM's connection events and QMP events, in arrival order. One consumer; when
    /// nobody reads, the newest 4096 are kept.
    public nonisolated let events: AsyncStream<MachineEvent>

    public init(options: Options = Options(), logger: Logger = Logger(label: "vmpulse.qmp")) {
        self.options = options
        self.logger = logger
        (events, eventSink) = AsyncStream<MachineEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
    }

    /// Scans the socket directory: sockets that appeared become VMs, VMs whose socket is gone are dropped.
    @discardableResult
    public func refresh() async throws(BackendError) -> Discovery {
        var sockets = try SocketDirectory.scan(options.socketDirectory)
        let now = MonotonicTime.now()
        for (path, entry) in dead where !sockets.contains(path) || now - entry.since >= Self.deadRetry
            || SocketDirectory.stamp(path) != entry.stamp {
            dead.removeValue(forKey: path)
        }
        for path in reportedDead.keys where !sockets.contains(path) { reportedDead.removeValue(forKey: path) }
        sockets.removeAll { dead[$0] != nil }
        let present = Set(sockets)
        let added = sockets.filter { monitors[$0] == nil }
        let removed = monitors.keys.filter { !present.contains($0) }.sorted()
        for path in added {
            monitors[path] = QMPMachine(socketPath: path, options: options, logger: logger, events: eventSink)
        }
        for path in removed {
            if let machine = monitors.removeValue(forKey: path) { await machine.close() }
        }
        if !added.isEmpty || !removed.isEmpty {
            logger.debug("socket directory: \(added.count) VM(s) appeared, \(removed.count) gone")
        }
        return Discovery(added: added, removed: removed)
    }

    /// The socket paths of the VMs currently known.
    public var machines: [String] { monitors.keys.sorted() }

    public func collect(groups: [StatsGroup], vms: [String]? = nil) async throws(BackendError) -> [StatsRecord] {
        try await refresh()
        var selected = Array(monitors.values)
        if let vms, !vms.isEmpty {
            var chosen: [QMPMachine] = []
            for machine in selected {
                for selector in vms where await machine.matches(selector) {
                    chosen.append(machine)
                    break
                }
            }
            // A VM whose QEMU name differs from its socket's name is known by name only once collected.
            if chosen.count < vms.count {
                let unknown = await withTaskGroup(of: (QMPMachine, Bool).self) { group in
                    for machine in selected where !chosen.contains(where: { $0 === machine }) {
                        group.addTask { (machine, await machine.name == nil) }
                    }
                    var result: [QMPMachine] = []
                    for await (machine, unnamed) in group where unnamed { result.append(machine) }
                    return result
                }
                for (machine, outcome) in await collect(unknown, groups: []) {
                    if case .record(let record) = outcome, vms.contains(record.name) || vms.contains(record.uuid) {
                        chosen.append(machine)
                    }
                }
            }
            selected = chosen
        }
        var records: [StatsRecord] = []
        var gone: [QMPMachine] = []
        for (machine, outcome) in await collect(selected, groups: groups) {
            switch outcome {
            case .record(let record): records.append(record)
            case .gone: gone.append(machine)
            }
        }
        for machine in gone { await drop(machine.socketPath) }
        return records.sorted { ($0.name, $0.uuid) < ($1.name, $1.uuid) }
    }

    /// Collects every machine in its own task, each bounded by the timeout (plus a
    /// little grace for the bookkeeping after the last reply).
    private func collect(_ selected: [QMPMachine], groups: [StatsGroup]) async -> [(QMPMachine, QMPMachine.Outcome)] {
        let timeout = options.timeout
        return await withTaskGroup(of: (QMPMachine, QMPMachine.Outcome).self) { group in
            for machine in selected {
                group.addTask {
                    let outcome = await withDeadline(timeout + .milliseconds(250)) {
                        await machine.collect(groups: groups, timeout: timeout)
                    } fallback: {
                        var record = StatsRecord(
                            name: machine.fallbackName, uuid: "",
                            errors: ["no answer within \(timeout)"])
                        record.params.append(StatsParam(MonitorResponse.key, .int(MonitorResponse.unresponsive)))
                        return .record(record)
                    }
                    return (machine, outcome)
                }
            }
            var results: [(QMPMachine, QMPMachine.Outcome)] = []
            for await result in group { results.append(result) }
            return results
        }
    }

    /// One VM's I/O reading (the agent samples each VM in a task of its own, so a stuck
    /// VM delays only itself). Nil when the VM is gone (no socket, or nothing listening).
    public func readIO(machine socketPath: String, histogramBoundaries: [UInt64]?) async -> VMIOReading? {
        guard let machine = monitors[socketPath] else { return nil }
        let timeout = options.timeout
        let reading = await withDeadline(timeout + .milliseconds(250)) {
            await machine.readIO(timeout: timeout, histogramBoundaries: histogramBoundaries)
        } fallback: {
            VMIOReading(machine: socketPath, name: machine.fallbackName, uuid: "", instance: nil, disks: [],
                        time: MonotonicTime.now(), wallTime: MonotonicTime.wallNow(), error: "no answer within \(timeout)")
        }
        if reading == nil { await drop(socketPath) }
        return reading
    }

    /// One VM's statistics for the groups given; nil when the VM is gone.
    public func collect(machine socketPath: String, groups: [StatsGroup]) async -> StatsRecord? {
        guard let machine = monitors[socketPath] else { return nil }
        guard let (_, outcome) = await collect([machine], groups: groups).first else { return nil }
        switch outcome {
        case .record(let record): return record
        case .gone:
            await drop(socketPath)
            return nil
        }
    }

    /// Forgets a VM whose socket nothing listens on, and remembers the socket file as dead.
    private func drop(_ socketPath: String) async {
        if let stamp = SocketDirectory.stamp(socketPath) {
            if reportedDead[socketPath] != stamp { logger.info("nothing listens on \(socketPath) any more: its VM is gone") }
            reportedDead[socketPath] = stamp
            dead[socketPath] = (stamp, MonotonicTime.now())
        }
        if let machine = monitors.removeValue(forKey: socketPath) { await machine.close() }
        if let agent = guestAgents.removeValue(forKey: socketPath) { await agent.close() }
    }

    /// Runs queries on one VM's monitor in one write.
    func run(socketPath: String, _ queries: [QMPQuery]) async throws(QMPError) -> QMPReplies {
        guard let machine = monitors[socketPath] else { throw .noListener(path: socketPath) }
        return try await machine.run(queries, timeout: options.timeout)
    }

    /// One VM's process id and command line, as its monitor connection learned them.
    func commandFacts(socketPath: String) async -> (pid: Int32?, arguments: QEMUArguments?)? {
        guard let machine = monitors[socketPath] else { return nil }
        return await machine.commandFacts
    }

    /// Runs a command on one VM's monitor.
    func execute(socketPath: String, _ command: String, arguments: [String: JSONValue]? = nil) async throws(QMPError) -> JSONValue {
        guard let machine = monitors[socketPath] else { throw .noListener(path: socketPath) }
        return try await machine.execute(command, arguments: arguments, timeout: options.timeout)
    }

    public func setWriteThreshold(machine: String, node: String, bytes: UInt64) async throws(MachineError) {
        do throws(QMPError) {
            _ = try await execute(socketPath: machine, "block-set-write-threshold",
                                  arguments: ["node-name": .string(node), "write-threshold": .uint(bytes)])
        } catch { throw MachineError(error) }
    }

    public func runState(machine: String) async throws(MachineError) -> RunState {
        do throws(QMPError) {
            let reply = try await execute(socketPath: machine, "query-status")
            guard let status = reply["status"]?.stringValue else {
                throw .unexpectedReply(command: "query-status", detail: "no 'status' string")
            }
            switch status {
            case "running": return .running
            case "io-error": return .ioError
            case "paused", "prelaunch": return .paused
            default: return .other(status)
            }
        } catch { throw MachineError(error) }
    }

    public func perform(_ action: VMAction, machine: String) async throws(MachineError) {
        let command = switch action {
        case .pause: "stop"
        case .resume: "cont"
        case .reset: "system_reset"
        case .powerdown: "system_powerdown"
        case .kill: "quit"
        }
        do throws(QMPError) {
            _ = try await execute(socketPath: machine, command)
        } catch {
            // `quit` may close the monitor before its reply arrives: the process is ending.
            if action == .kill, case .connectionClosed = error { return }
            throw MachineError(error)
        }
    }

    /// Closes every monitor connection.
    public func close() async {
        for machine in monitors.values { await machine.close() }
        monitors.removeAll()
        for agent in guestAgents.values { await agent.close() }
        guestAgents.removeAll()
        eventSink.finish()  // the events end with the backend (see `events`)
    }
}
