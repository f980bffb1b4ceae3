import Hypervisor
import Logging
import ServiceLifecycle
import Store
import Synchronization
import VMPulseCore

/// The heartbeat watchdog: every configured link in tasks of its own (its transport or
/// probe, its clock, its actions), so that a silent peer, a hanging action or a stuck
/// guest delays nothing else. Its state is in `book`; action outcomes go to
/// `heartbeat.sqlite` in the data directory.
public final class HeartbeatService: Service, Sendable {
    public let book: HeartbeatBook
    let settings: HeartbeatSettings
    let dataDirectory: String
    let backend: any HypervisorBackend
    let store: SnapshotStore
    let bus: AgentEventBus?
    let logger: Logger
    let key: PulseKey?
    public let sender: String
    /// This run's incarnation (Unix ns at start): a peer refuses frames of earlier runs.
    let incarnation: UInt64
    private let sequence = Atomic<UInt64>(0)
    private let transports = Mutex<[String: PeerTransport]>([:])
    /// The action log, once opened (nil when it could not be: outcomes are then only logged).
    public let actionLog = Mutex<ActionLog?>(nil)

    public init(config: AgentConfig, backend: any HypervisorBackend, store: SnapshotStore, bus: AgentEventBus?, logger: Logger) throws(ConfigError) {
        settings = config.heartbeat
        dataDirectory = config.dataDirectory
        self.backend = backend
        self.store = store
        self.bus = bus
        self.logger = logger
        key = try settings.keyFile.map { (path) throws(ConfigError) in try HeartbeatKey.load(path: path) }
        sender = settings.senderName
        incarnation = UInt64(max(0, MonotonicTime.wallNow()) * 1e9)
        let now = MonotonicTime.now()
        book = HeartbeatBook(settings.links.map { link in
            var vms: [String] = []
            if case .guest(let vm) = link.kind { vms.append(vm) }
            for action in link.onSuspect + link.onDead + link.onAlive { if case .vm(let name, _) = action, !vms.contains(name) { vms.append(name) } }
            let detector: String
            switch link.detector {
            case .fixed: detector = "fixed \(link.timeout) s"
            case .phi(let threshold, _, _): detector = "phi \(threshold)"
            }
            return LinkStatus(name: link.name, kind: ActionRunner.kind(link), target: ActionRunner.target(link), detector: detector, since: now, vms: vms)
        })
    }

    /// The machines answering to a VM name or UUID now.
    func machines(for vm: String) -> [String] {
        store.current().filter { $0.name == vm || (!$0.uuid.isEmpty && $0.uuid == vm) }.map(\.machine)
    }

    func frame(_ kind: PulseFrame.Kind, subject: String = "", state: LinkState = .alive) -> [UInt8] {
        guard let key else { return [] }
        let seq = sequence.add(1, ordering: .relaxed).newValue
        return PulseFrame(kind: kind, sender: sender, incarnation: incarnation, sequence: seq, timestamp: UInt64(max(0, MonotonicTime.wallNow()) * 1e9),
                          subject: subject, state: state).encoded(key: key)
    }

    public func run() async throws {
        guard !settings.links.isEmpty else {
            try? await gracefulShutdown()
            return
        }
        do throws(LedgerError) {
            let log = try ActionLog.open(path: dataDirectory + "/heartbeat.sqlite")
            actionLog.withLock { $0 = log }
        } catch {
            logger.error("heartbeat: cannot open the action log: \(error); action outcomes are only logged")
        }
        let start = MonotonicTime.now()
        let monitors = settings.links.enumerated().map { LinkMonitor(index: $0.offset, config: $0.element, book: book, start: start) }
        let runner = ActionRunner(backend: backend, resolve: { [self] in machines(for: $0) }, book: book, log: actionLog.withLock { $0 }, bus: bus,
                                  logger: logger, hostName: sender) { [self] link, subject, state in
            guard let transport = transports.withLock({ $0[link] }), transport.sessionCount > 0 else { return false }
            transport.broadcast(frame(.notice, subject: subject, state: state))
            return true
        }
        for monitor in monitors {
            if case .peer(let peer, let address, let listens) = monitor.config.kind, let key, let hp = try? HeartbeatSettings.hostPort(address, key: "") {
                let transport = PeerTransport(monitor: monitor, key: key, peer: peer, address: hp, listens: listens, maxSkew: settings.maxClockSkew,
                                              logger: logger) { [self] notice in received(notice, on: monitor) }
                transports.withLock { $0[monitor.config.name] = transport }
            }
        }
        logger.info("heartbeat: \(monitors.count) link\(monitors.count == 1 ? "" : "s") as \(sender)")
        await cancelWhenGracefulShutdown { [self] in
            await withDiscardingTaskGroup { group in
                for monitor in monitors {
                    group.addTask { await self.watch(monitor) }
                    group.addTask { await self.feed(monitor) }
                    group.addTask {
                        for await change in monitor.transitions { await runner.run(monitor, change) }
                    }
                }
            }
        }
        for monitor in monitors { monitor.finish() }
    }

    /// The link's clock: checks the detector a few times per interval.
    private func watch(_ monitor: LinkMonitor) async {
        let step = Duration.milliseconds(Int64(max(10, min(250, monitor.config.interval * 250))))
        while (try? await Task.sleep(for: step)) != nil {
            monitor.check(at: MonotonicTime.now())
        }
    }

    /// The link's pulses: the peer's frames, or this side's probes.
    private func feed(_ monitor: LinkMonitor) async {
        let c = monitor.config
        let interval = Duration.milliseconds(Int64(c.interval * 1000))
        switch c.kind {
        case .peer:
            guard let transport = transports.withLock({ $0[c.name] }) else { return }
            await withDiscardingTaskGroup { group in
                group.addTask { await transport.run { self.frame(.pulse) } }
                group.addTask {
                    while (try? await Task.sleep(for: interval)) != nil { transport.broadcast(self.frame(.pulse)) }
                }
            }
        case .guest(let vm):
            await probeLoop(monitor, interval: interval) { [self] () async throws(ProbeError) in
                try await Probes.guest(vm: vm, backend: backend, resolve: { self.machines(for: $0) })
            }
        case .service(let address, let send, let expect):
            guard let hp = try? HeartbeatSettings.hostPort(address, key: "") else { return }
            let timeout = min(c.interval, c.timeout)
            await probeLoop(monitor, interval: interval) { () async throws(ProbeError) in
                try await Probes.service(host: hp.host, port: hp.port, send: send, expect: expect, timeout: timeout)
            }
        }
    }

    private func probeLoop(_ monitor: LinkMonitor, interval: Duration, probe: @Sendable () async throws(ProbeError) -> Void) async {
        let clock = ContinuousClock()
        let log = RateLimitedLog(logger: logger, link: monitor.config.name)
        var next = clock.now
        while !Task.isCancelled {
            do throws(ProbeError) {
                try await probe()
                monitor.pulse(at: MonotonicTime.now())
            } catch {
                monitor.book.update(monitor.index) { s in
                    s.failedProbes &+= 1
                    s.lastProblem = error.message
                }
                log.notice("probe failed: \(error)", category: "probe")
            }
            next = next.advanced(by: interval)
            if next < clock.now { next = clock.now }  // a probe that took longer than the interval: no burst to catch up
            guard (try? await Task.sleep(until: next, clock: clock)) != nil else { return }
        }
    }

    /// A peer's notice: recorded and told, never acted on.
    private func received(_ notice: LinkStatus.Notice, on monitor: LinkMonitor) {
        logger.warning("heartbeat link \(monitor.config.name): \(notice.from) says its link \(notice.link) is \(notice.state.rawValue)")
        book.update(monitor.index) { s in
            s.notices.append(notice)
            if s.notices.count > LinkStatus.keptNotices { s.notices.removeFirst(s.notices.count - LinkStatus.keptNotices) }
        }
        bus?.publish(AgentEvent(kind: .heartbeatNotice, vm: "", name: monitor.config.name, data: [
            "from": .string(notice.from), "link": .string(notice.link), "state": .string(notice.state.rawValue),
        ], time: notice.time))
    }
}
