import Logging
import QMP
import VMPulseCore

/// One VM, reached through its vmpulse monitor socket. Keeps the connection
/// and what does not change while QEMU runs (name, UUID, pid, balloon path).
actor QMPMachine {
    let socketPath: String
    private let options: QMPBackend.Options
    private let logger: Logger
    private var client: QMPClient?
    private(set) var name: String?
    private(set) var uuid: String?
    private(set) var pid: Int32?
    /// nil: not looked up yet on this connection; .some(nil): the VM has no balloon.
    private var balloonPath: String??
    private var balloonPollingChecked = false
    /// What QEMU's command line told (nil until connected, or when /proc could not be read).
    private var commandLine: QEMUArguments?
    /// The image file of each format node, from `query-named-block-nodes`, for this connection.
    private var nodeFiles: [String: String] = [:]
    /// Drives whose latency histograms vmpulse switched on, on this connection.
    private var histogramsOn: Set<String> = []
    private var instance: QEMUInstance?
    /// Warnings that a monitor reconnecting again and again would repeat: once a minute each.
    private var warnings = RepeatLimiter(interval: 60)

    enum Outcome: Sendable {
        case record(StatsRecord)
        /// Nothing listens on the socket any more: the VM is gone.
        case gone
    }

    private let events: AsyncStream<MachineEvent>.Continuation
    /// The current connection's number, and the identity announced for it.
    private var connection = 0
    private struct Identity: Equatable { var name, uuid: String }
    private var announced: Identity?

    init(socketPath: String, options: QMPBackend.Options, logger: Logger, events: AsyncStream<MachineEvent>.Continuation) {
        self.socketPath = socketPath
        self.options = options
        self.logger = logger
        self.events = events
    }

    /// The name to show before QEMU has told us its own.
    nonisolated var fallbackName: String { SocketDirectory.vmName(forSocket: socketPath) }

    func matches(_ selector: String) -> Bool {
        selector == (name ?? fallbackName) || selector == uuid || selector == fallbackName
    }

    func close() async {
        await client?.close()
        client = nil
    }

    /// Collects the groups, within `timeout` for connecting and every query.
    func collect(groups: [StatsGroup], timeout: Duration) async -> Outcome {
        let deadline = ContinuousClock.now + timeout
        let client: QMPClient
        switch await connected(timeout: timeout) {
        case .success(let c): client = c
        case .failure(.noListener):
            return .gone
        case .failure(let error):
            return .record(unresponsive(groups: groups, because: error))
        }

        var queries = Set(groups.flatMap(Self.queries(for:)))
        // What the command line fixes for QEMU's lifetime need not be asked.
        if commandLine?.maxVCPUs != nil { queries.remove(VCPUGroup.queries[1]) }
        if commandLine?.fixedMemoryBytes != nil { queries.remove(BalloonGroup.memory) }
        if name == nil { queries.formUnion([Self.queryName, Self.queryUUID]) }
        if groups.contains(.balloon) {
            switch balloonPath {
            case nil: queries.formUnion(BalloonGroup.peripheralLists)
            case .some(.some(let path)): queries.formUnion(balloonStatsQueries(path: path))
            case .some(.none): break
            }
        }
        if groups.contains(.interface) && pid == nil { queries.formUnion(InterfaceGroup.queries) }
        var replies = await QMPReplies.run(queries, on: client, timeout: deadline - .now)
        if let failure = replies.monitorFailure {
            return .record(unresponsive(groups: groups, because: failure))
        }
        var errors: [String] = []
        learnIdentity(from: replies, errors: &errors)
        if let nodes = try? replies.reply(BlockGroup.nodes) { learnNodeFiles(nodes) }
        if groups.contains(.balloon) {
            let more = await balloonQueries(replies: replies, client: client, deadline: deadline, errors: &errors)
            replies.results.merge(more.results) { _, new in new }
            if let failure = more.monitorFailure {
                return .record(unresponsive(groups: groups, because: failure))
            }
        }
        var record = StatsRecord(name: name ?? fallbackName, uuid: uuid ?? "")
        // /proc/PID/stat once per pass, for cpu-total and balloon.rss.
        var stat: Result<ProcStat?, ProcParseError>?
        if let pid, groups.contains(.cpuTotal) || groups.contains(.balloon) {
            stat = Result { () throws(ProcParseError) in try ProcFS.processStat(pid: pid) }
        }
        for group in groups {
            do {
                record.params += try params(of: group, replies: replies, stat: stat)
            } catch {
                errors.append("\(group.rawValue): \(error)")
            }
        }
        record.errors = errors
        return .record(record)
    }

    /// The agent's frequent pass: one `query-blockstats` (plus, when a drive is new,
    /// `query-named-block-nodes` for its file, and `block-latency-histogram-set` to switch
    /// its histograms on when `histogramBoundaries` is given).
    func readIO(timeout: Duration, histogramBoundaries: [UInt64]?) async -> VMIOReading? {
        let deadline = ContinuousClock.now + timeout
        func failed(_ error: QMPError) -> VMIOReading {
            VMIOReading(machine: socketPath, name: name ?? fallbackName, uuid: uuid ?? "", instance: instance, disks: [],
                        time: MonotonicTime.now(), wallTime: MonotonicTime.wallNow(), error: "\(error)", identityKnown: name != nil)
        }
        let client: QMPClient
        switch await connected(timeout: timeout) {
        case .success(let c): client = c
        case .failure(.noListener): return nil
        case .failure(let error): return failed(error)
        }
        var queries: [QMPQuery] = [BlockGroup.stats]
        if name == nil { queries += [Self.queryName, Self.queryUUID] }
        var replies = await QMPReplies.run(queries, on: client, timeout: deadline - .now)
        let time = MonotonicTime.now()
        let wall = MonotonicTime.wallNow()
        if let failure = replies.monitorFailure { return failed(failure) }
        var errors: [String] = []
        learnIdentity(from: replies, errors: &errors)
        do {
            let stats = try replies.reply(BlockGroup.stats)
            let entries = try ReplyReader(command: "query-blockstats", value: stats).array()
            let formatNodes = try entries.compactMap { (e) throws(QMPError) in try e.optionalString("node-name") }
            if formatNodes.contains(where: { nodeFiles[$0] == nil }) {
                let more = await QMPReplies.run([BlockGroup.nodes], on: client, timeout: deadline - .now)
                if let failure = more.monitorFailure { return failed(failure) }
                learnNodeFiles(try more.reply(BlockGroup.nodes))
                replies.results.merge(more.results) { _, new in new }
            }
            let drives = try BlockGroup.drives(blockstats: stats, nodes: .array([]))
            if let histogramBoundaries {
                await switchHistogramsOn(drives.map(\.deviceID), boundaries: histogramBoundaries, client: client, deadline: deadline)
            }
            let disks = drives.map { d in
                DiskIOReading(name: d.name, path: nodeFiles[d.formatNode] ?? "", counters: d.counters, histograms: d.histograms,
                              idleTimeNs: d.idleTimeNs, allocation: d.allocation)
            }
            return VMIOReading(machine: socketPath, name: name ?? fallbackName, uuid: uuid ?? "", instance: instance,
                               disks: disks, time: time, wallTime: wall, error: errors.isEmpty ? nil : errors.joined(separator: "; "),
                               identityKnown: name != nil)
        } catch {
            return VMIOReading(machine: socketPath, name: name ?? fallbackName, uuid: uuid ?? "", instance: instance, disks: [],
                               time: time, wallTime: wall, error: "io: \(error)", identityKnown: name != nil)
        }
    }

    private func learnNodeFiles(_ nodes: JSONValue) {
        guard let list = nodes.arrayValue else { return }
        for node in list {
            if let name = node["node-name"]?.stringValue, let file = node["file"]?.stringValue { nodeFiles[name] = file }
        }
    }

    private func switchHistogramsOn(_ devices: [String], boundaries: [UInt64], client: QMPClient, deadline: ContinuousClock.Instant) async {
        let missing = devices.filter { !$0.isEmpty && !histogramsOn.contains($0) }
        guard !missing.isEmpty else { return }
        let queries = missing.map { QMPQuery("block-latency-histogram-set", ["id": .string($0), "boundaries": .array(boundaries.map { .uint($0) })]) }
        let results = await QMPReplies.run(queries, on: client, timeout: deadline - .now)
        for (device, query) in zip(missing, queries) {
            if case .success? = results.results[query] {
                histogramsOn.insert(device)
            } else {
                let why = results.results[query].map { r -> String in if case .failure(let e) = r { return "\(e)" } else { return "no reply" } } ?? "no reply"
                warn("histograms", "cannot switch latency histograms on for \(device) of \(name ?? fallbackName): \(why)")
                histogramsOn.insert(device)  // do not retry every second; a new connection tries again
            }
        }
    }

    // MARK: connection

    private func connected(timeout: Duration) async -> Result<QMPClient, QMPError> {
        if let client, client.isActive { return .success(client) }
        client = nil
        balloonPath = nil
        balloonPollingChecked = false
        var clientOptions = options.client
        clientOptions.connectTimeout = timeout
        clientOptions.commandTimeout = timeout
        do {
            let fresh = try await QMPClient.connect(socketPath: socketPath, options: clientOptions)
            client = fresh
            pid = fresh.peerPID
            name = nil  // a new connection may be a new QEMU behind the same socket
            uuid = nil
            learnFromCommandLine()
            nodeFiles = [:]
            histogramsOn = []
            instance = fresh.peerPID.flatMap(ProcFS.instance(pid:))
            forwardEvents(of: fresh)
            return .success(fresh)
        } catch {
            if case .noListener = error {
                logger.debug("no QEMU behind \(socketPath); dropping it")
            } else {
                logger.debug("cannot reach the monitor of \(fallbackName): \(error)")
            }
            return .failure(error)
        }
    }

    /// Hands the connection's events on, bracketed by `connected` (with the VM's identity,
    /// so that consumers need not ask the monitor) and `disconnected`. QEMU's events wait
    /// in the client's buffer while the identity is asked, so none is lost or reordered.
    private func forwardEvents(of client: QMPClient) {
        let sink = events
        let path = socketPath
        let timeout = options.timeout
        let connection = MachineEvent.newConnection()
        self.connection = connection
        announced = nil
        Task {
            await self.askIdentity(on: client, timeout: timeout)
            await self.announce(connection: connection)
            for await event in client.events {
                guard let kind = MachineEvent.Kind(qmp: event) else { continue }
                sink.yield(MachineEvent(machine: path, connection: connection, kind: kind, receivedAt: MonotonicTime.now()))
            }
            sink.yield(MachineEvent(machine: path, connection: connection, kind: .disconnected, receivedAt: MonotonicTime.now()))
        }
    }

    /// Asks QEMU for the VM's name and UUID on `client`'s connection, unless the command
    /// line said them.
    private func askIdentity(on client: QMPClient, timeout: Duration) async {
        guard name == nil, self.client === client else { return }
        let replies = await QMPReplies.run([Self.queryName, Self.queryUUID], on: client, timeout: timeout)
        var errors: [String] = []
        learnIdentity(from: replies, errors: &errors)
        if !errors.isEmpty { warn("identity", "\(fallbackName): \(errors.joined(separator: "; ")); known by its socket's name until it answers") }
    }

    /// Yields `connected` for the current connection, again whenever its identity changes
    /// (learned late, after a monitor that was slow to answer).
    private func announce(connection: Int) {
        guard connection == self.connection else { return }
        let identity = Identity(name: name ?? fallbackName, uuid: uuid ?? "")
        guard identity != announced else { return }
        announced = identity
        let known = name != nil
        events.yield(MachineEvent(machine: socketPath, connection: connection,
                                  kind: .connected(name: identity.name, uuid: identity.uuid, identityKnown: known),
                                  receivedAt: MonotonicTime.now()))
    }

    private func warn(_ subject: String, _ message: String) {
        let (allowed, held) = warnings.allow(subject, now: MonotonicTime.now())
        guard allowed else { return }
        logger.warning("\(message)\(held > 0 ? " (\(held) more like it in the last minute not logged)" : "")")
    }

    /// Runs queries on the VM's monitor in one write (connecting if need be); a monitor
    /// that failed or timed out throws, a command QEMU refused is in the replies.
    func run(_ queries: [QMPQuery], timeout: Duration) async throws(QMPError) -> QMPReplies {
        let client = try await connected(timeout: timeout).get()
        let replies = await QMPReplies.run(queries, on: client, timeout: timeout)
        if let failure = replies.monitorFailure { throw failure }
        return replies
    }

    /// Runs one command on the VM's monitor (connecting if need be).
    func execute(_ command: String, arguments: [String: JSONValue]?, timeout: Duration) async throws(QMPError) -> JSONValue {
        let client = try await connected(timeout: timeout).get()
        return try await client.execute(command, arguments: arguments, timeout: timeout)
    }

    /// The process and its command line, for `describe`.
    var commandFacts: (pid: Int32?, arguments: QEMUArguments?) { (pid, commandLine) }

    /// What QEMU's command line says needs no monitor command: the name and UUID
    /// (when both are given there) and the balloon's QOM path (when it has an id).
    private func learnFromCommandLine() {
        commandLine = nil
        guard let pid, let bytes = ProcFS.readBytes("/proc/\(pid)/cmdline") else { return }
        let arguments = QEMUArguments(cmdline: bytes)
        commandLine = arguments
        if let n = arguments.name, let u = arguments.uuid {
            name = n
            uuid = u
        }
        if let path = arguments.peripheralPath(driverPrefix: "virtio-balloon") {
            balloonPath = .some(path)
        }
    }

    private func unresponsive(groups: [StatsGroup], because error: QMPError) -> StatsRecord {
        var record = StatsRecord(name: name ?? fallbackName, uuid: uuid ?? "", errors: ["\(error)"])
        record.params.append(StatsParam(MonitorResponse.key, .int(MonitorResponse.unresponsive)))
        // What /proc knows does not need the monitor.
        if groups.contains(.cpuTotal), let pid, let cpu = try? CPUGroup.params(pid: pid) {
            record.params += cpu
        }
        return record
    }

    // MARK: queries

    static let queryName = QMPQuery("query-name")
    static let queryUUID = QMPQuery("query-uuid")

    static func queries(for group: StatsGroup) -> [QMPQuery] {
        switch group {
        case .state: return StateGroup.queries
        case .vcpu: return VCPUGroup.queries
        case .balloon: return [BalloonGroup.balloon, BalloonGroup.memory]
        case .interface: return []  // from /proc (see InterfaceGroup.tapNames(pid:)); HMP only without a pid
        case .block: return BlockGroup.queries
        case .io: return [BlockGroup.stats, BlockGroup.nodes]
        case .iothread: return IOThreadGroup.queries
        case .cpuTotal, .perf, .memory, .dirtyrate, .vm, .thin, .heartbeat: return []
        }
    }

    private func learnIdentity(from replies: QMPReplies, errors: inout [String]) {
        guard name == nil else { return }
        do {
            // Both or neither: a name without its UUID would file usage under `name:NAME` on
            // this connection and under the UUID on the next.
            let nameReply = ReplyReader(command: "query-name", value: try replies.reply(Self.queryName))
            let learnedName = try nameReply.object().optionalString("name") ?? fallbackName
            let learnedUUID = try ReplyReader(command: "query-uuid", value: try replies.reply(Self.queryUUID)).object().string("UUID")
            (name, uuid) = (learnedName, learnedUUID)
            if announced != nil { announce(connection: connection) }
        } catch {
            errors.append("identity: \(error)")
        }
    }

    /// The guest-stats queries for a known balloon: the stats, and once per connection
    /// the polling interval (to switch it on when nobody has).
    private func balloonStatsQueries(path: String) -> [QMPQuery] {
        var queries = [BalloonGroup.guestStats(path: path)]
        if !balloonPollingChecked && options.balloonStatsPeriod > 0 { queries.append(BalloonGroup.pollingInterval(path: path)) }
        return queries
    }

    /// The rest of the balloon group: find the balloon if its path was not known (a
    /// second round), switch its guest stats on if nobody has (once per connection).
    private func balloonQueries(replies: QMPReplies, client: QMPClient, deadline: ContinuousClock.Instant, errors: inout [String]) async -> QMPReplies {
        var round = QMPReplies()
        if balloonPath == nil {
            do {
                let lists = zip(["/machine/peripheral", "/machine/peripheral-anon"], BalloonGroup.peripheralLists)
                    .compactMap { base, query in (try? replies.reply(query)).map { (base: base, reply: $0) } }
                balloonPath = .some(try BalloonGroup.balloonPath(lists: lists))
            } catch {
                errors.append("balloon: \(error)")
                balloonPath = .some(nil)
            }
            guard case .some(.some(let path)) = balloonPath else { return round }
            round = await QMPReplies.run(balloonStatsQueries(path: path), on: client, timeout: deadline - .now)
        }
        guard case .some(.some(let path)) = balloonPath, !balloonPollingChecked, options.balloonStatsPeriod > 0 else { return round }
        let check = BalloonGroup.pollingInterval(path: path)
        guard let interval = try? (round.results[check] ?? replies.results[check])?.get() else { return round }
        balloonPollingChecked = true
        if interval.int64Value == 0 {
            let set = BalloonGroup.setPollingInterval(path: path, seconds: options.balloonStatsPeriod)
            let result = await QMPReplies.run([set], on: client, timeout: deadline - .now)
            if case .failure(let error)? = result.results[set] { errors.append("balloon: \(error)") }
        }
        return round
    }

    private func params(of group: StatsGroup, replies: QMPReplies, stat: Result<ProcStat?, ProcParseError>?) throws -> [StatsParam] {
        switch group {
        case .state:
            return try StateGroup.params(status: replies.reply(StateGroup.queries[0]))
        case .cpuTotal:
            guard let stat else { throw BackendError("the QEMU process id is unknown (SO_PEERCRED gave none)") }
            return try stat.get().map(CPUGroup.params) ?? []
        case .balloon:
            let actual = try BalloonGroup.actual(replies.results[BalloonGroup.balloon])
            var guestStats: JSONValue?
            if case .some(.some(let path)) = balloonPath {
                guestStats = try? replies.reply(BalloonGroup.guestStats(path: path))
            }
            let rss = (try? stat?.get())??.map { $0.rssPages &* ProcFS.pageSize }
            let maximum = try commandLine?.fixedMemoryBytes ?? BalloonGroup.maximum(replies.reply(BalloonGroup.memory))
            return try BalloonGroup.params(balloonActual: actual, maximumBytes: maximum, guestStats: guestStats, rssBytes: rss)
        case .vcpu:
            let vcpus = try VCPUGroup.vcpus(replies.reply(VCPUGroup.queries[0]))
            let maximum = commandLine?.maxVCPUs.map { UInt64($0) } ?? (try? VCPUGroup.maximum(replies.reply(VCPUGroup.queries[1])))
            return try VCPUGroup.params(vcpus: vcpus, maximum: maximum, pid: pid)
        case .interface:
            if let pid, let taps = InterfaceGroup.tapNames(pid: pid) { return InterfaceGroup.params(taps: taps) }
            return InterfaceGroup.params(taps: try InterfaceGroup.tapNames(replies.reply(InterfaceGroup.queries[0])))
        case .block:
            return BlockGroup.params(try BlockGroup.drives(blockstats: replies.reply(BlockGroup.stats), nodes: replies.reply(BlockGroup.nodes)))
        case .iothread:
            return try IOThreadGroup.params(replies.reply(IOThreadGroup.queries[0]))
        case .io:
            return IOGroup.params(try BlockGroup.drives(blockstats: replies.reply(BlockGroup.stats), nodes: replies.reply(BlockGroup.nodes)))
        case .perf, .memory, .dirtyrate, .vm, .thin, .heartbeat:
            return []
        }
    }
}
