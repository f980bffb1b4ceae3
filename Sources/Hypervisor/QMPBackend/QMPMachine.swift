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

    enum Outcome: Sendable {
        case record(StatsRecord)
        /// Nothing listens on the socket any more: the VM is gone.
        case gone
    }

    init(socketPath: String, options: QMPBackend.Options, logger: Logger) {
        self.socketPath = socketPath
        self.options = options
        self.logger = logger
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
        if name == nil { queries.formUnion([Self.queryName, Self.queryUUID]) }
        if groups.contains(.balloon) && balloonPath == nil { queries.formUnion(BalloonGroup.peripheralLists) }
        var replies = await QMPReplies.run(queries, on: client, timeout: deadline - .now)
        if let failure = replies.monitorFailure {
            return .record(unresponsive(groups: groups, because: failure))
        }
        var errors: [String] = []
        learnIdentity(from: replies, errors: &errors)
        if groups.contains(.balloon) {
            let more = await balloonQueries(replies: replies, client: client, deadline: deadline, errors: &errors)
            replies.results.merge(more.results) { _, new in new }
            if let failure = more.monitorFailure {
                return .record(unresponsive(groups: groups, because: failure))
            }
        }
        var record = StatsRecord(name: name ?? fallbackName, uuid: uuid ?? "")
        for group in groups {
            do {
                record.params += try params(of: group, replies: replies)
            } catch {
                errors.append("\(group.rawValue): \(error)")
            }
        }
        record.errors = errors
        return .record(record)
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
        case .interface: return InterfaceGroup.queries
        case .block: return BlockGroup.queries
        case .iothread: return IOThreadGroup.queries
        case .cpuTotal, .perf, .memory, .dirtyrate, .vm: return []
        }
    }

    private func learnIdentity(from replies: QMPReplies, errors: inout [String]) {
        guard name == nil else { return }
        do {
            let nameReply = ReplyReader(command: "query-name", value: try replies.reply(Self.queryName))
            name = try nameReply.object().optionalString("name") ?? fallbackName
            uuid = try ReplyReader(command: "query-uuid", value: try replies.reply(Self.queryUUID)).object().string("UUID")
        } catch {
            errors.append("identity: \(error)")
        }
    }

    /// The second round of the balloon group: find the balloon, switch on its guest
    /// stats once per connection if nobody has, and read them.
    private func balloonQueries(replies: QMPReplies, client: QMPClient, deadline: ContinuousClock.Instant, errors: inout [String]) async -> QMPReplies {
        if balloonPath == nil {
            do {
                let lists = zip(["/machine/peripheral", "/machine/peripheral-anon"], BalloonGroup.peripheralLists)
                    .compactMap { base, query in (try? replies.reply(query)).map { (base: base, reply: $0) } }
                balloonPath = .some(try BalloonGroup.balloonPath(lists: lists))
            } catch {
                errors.append("balloon: \(error)")
                balloonPath = .some(nil)
            }
        }
        guard case .some(.some(let path)) = balloonPath else { return QMPReplies() }
        var queries = [BalloonGroup.guestStats(path: path)]
        let checkPolling = !balloonPollingChecked && options.balloonStatsPeriod > 0
        if checkPolling { queries.append(BalloonGroup.pollingInterval(path: path)) }
        let round = await QMPReplies.run(queries, on: client, timeout: deadline - .now)
        if checkPolling, let interval = try? round.reply(BalloonGroup.pollingInterval(path: path)) {
            balloonPollingChecked = true
            if interval.int64Value == 0 {
                let set = BalloonGroup.setPollingInterval(path: path, seconds: options.balloonStatsPeriod)
                let result = await QMPReplies.run([set], on: client, timeout: deadline - .now)
                if case .failure(let error)? = result.results[set] { errors.append("balloon: \(error)") }
            }
        }
        return round
    }

    private func params(of group: StatsGroup, replies: QMPReplies) throws -> [StatsParam] {
        switch group {
        case .state:
            return try StateGroup.params(status: replies.reply(StateGroup.queries[0]))
        case .cpuTotal:
            guard let pid else { throw BackendError("the QEMU process id is unknown (SO_PEERCRED gave none)") }
            return try CPUGroup.params(pid: pid)
        case .balloon:
            let actual = try BalloonGroup.actual(replies.results[BalloonGroup.balloon])
            var guestStats: JSONValue?
            if case .some(.some(let path)) = balloonPath {
                guestStats = try? replies.reply(BalloonGroup.guestStats(path: path))
            }
            let rss = pid.flatMap { try? ProcFS.processStat(pid: $0) }.map { $0.rssPages &* ProcFS.pageSize }
            return try BalloonGroup.params(
                balloonActual: actual, memory: replies.reply(BalloonGroup.memory), guestStats: guestStats, rssBytes: rss)
        case .vcpu:
            let vcpus = try VCPUGroup.vcpus(replies.reply(VCPUGroup.queries[0]))
            let maximum = try? VCPUGroup.maximum(replies.reply(VCPUGroup.queries[1]))
            return try VCPUGroup.params(vcpus: vcpus, maximum: maximum, pid: pid)
        case .interface:
            return InterfaceGroup.params(taps: try InterfaceGroup.tapNames(replies.reply(InterfaceGroup.queries[0])))
        case .block:
            return BlockGroup.params(try BlockGroup.drives(blockstats: replies.reply(BlockGroup.stats), nodes: replies.reply(BlockGroup.nodes)))
        case .iothread:
            return try IOThreadGroup.params(replies.reply(IOThreadGroup.queries[0]))
        case .perf, .memory, .dirtyrate, .vm:
            return []
        }
    }
}
