import Hypervisor
import Logging
import NIOCore
import NIOPosix
import Synchronization
import VMPulseCore

/// The TCP side of a peer link: a listener or a connector with backoff, sessions that
/// send this agent's frames and verify the peer's, and the bounds that keep a hostile
/// peer from holding more than a frame of memory or a connection for long.
final class PeerTransport: Sendable {
    typealias Session = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    let monitor: LinkMonitor
    let key: PulseKey
    let host: String
    let port: Int
    let listens: Bool
    private let verifier: Mutex<PulseVerifier>
    private let outlets = Mutex<[Int: AsyncStream<[UInt8]>.Continuation]>([:])
    private let nextSession = Atomic<Int>(0)
    /// Connections a listening link holds (see `maxPeerConnections`).
    private let admitted = Atomic<Int>(0)
    let log: RateLimitedLog
    let onNotice: @Sendable (LinkStatus.Notice) -> Void

    /// Frames a session may receive per second before it is cut off as a flood (a peer
    /// sends one per interval; twenty times that, and at least 50, is no peer's mistake).
    var maxFramesPerSecond: Int { max(50, Int(20 / monitor.config.interval)) }

    init(monitor: LinkMonitor, key: PulseKey, peer: String, address: (host: String, port: Int), listens: Bool, maxSkew: Double,
         logger: Logger, onNotice: @escaping @Sendable (LinkStatus.Notice) -> Void) {
        self.monitor = monitor
        self.key = key
        host = address.host
        port = address.port
        self.listens = listens
        verifier = Mutex(PulseVerifier(peer: peer, maxSkew: maxSkew))
        log = RateLimitedLog(logger: logger, link: monitor.config.name)
        self.onNotice = onNotice
    }

    /// Sends `frame` on every open session (dropped where a session's backlog is full:
    /// a newer pulse says the same).
    func broadcast(_ frame: [UInt8]) {
        for outlet in outlets.withLock({ Array($0.values) }) { outlet.yield(frame) }
    }

    var sessionCount: Int { outlets.withLock { $0.count } }

    /// Runs until cancelled.
    func run(pulse: @escaping @Sendable () -> [UInt8]) async {
        if listens { await listen(pulse: pulse) } else { await connectLoop(pulse: pulse) }
    }

    private func initializer(_ channel: any Channel) -> EventLoopFuture<Session> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PulseFrameDecoder()))
            return try Session(wrappingChannelSynchronously: channel, configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8)))
        }
    }

    private func listen(pulse: @escaping @Sendable () -> [UInt8]) async {
        var delay = 0.5
        while !Task.isCancelled {
            do {
                let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: host, port: port) { self.initializer($0) }
                log.info("listening on \(host):\(port)")
                try await server.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await session in inbound {
                            // Counted here, before its task runs, so that a burst cannot pass the limit.
                            guard admitted.add(1, ordering: .relaxed).newValue <= HeartbeatLinkConfig.maxPeerConnections else {
                                admitted.subtract(1, ordering: .relaxed)
                                log.warning("refusing a connection: \(HeartbeatLinkConfig.maxPeerConnections) are open on this link", category: "full")
                                try? await session.channel.close()
                                continue
                            }
                            group.addTask { await self.serve(session, pulse: pulse, admitted: true) }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                log.error("cannot listen on \(host):\(port): \(error); trying again in \(delay) s", category: "listen")
            }
            guard (try? await Task.sleep(for: .seconds(delay))) != nil else { return }
            delay = min(delay * 2, 30)
        }
    }

    private func connectLoop(pulse: @escaping @Sendable () -> [UInt8]) async {
        let first = 0.2
        var delay = first
        let cap = max(2, monitor.config.interval * 2)
        while !Task.isCancelled {
            do {
                let session = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(.milliseconds(Int64(min(monitor.config.timeout, 5) * 1000)))
                    .connect(host: host, port: port) { self.initializer($0) }
                log.info("connected to \(host):\(port)")
                if await serve(session, pulse: pulse) { delay = first }
            } catch {
                if Task.isCancelled { return }
                log.notice("cannot connect to \(host):\(port): \(error)", category: "connect")
            }
            guard (try? await Task.sleep(for: .seconds(delay))) != nil else { return }
            delay = min(delay * 2, cap)
        }
    }

    /// One connection: this agent's frames out, the peer's in. It ends when the peer
    /// closes, sends something that is not a valid frame, floods, or sends no valid
    /// frame for the link's timeout. Returns whether any frame was accepted.
    @discardableResult
    func serve(_ session: Session, pulse: @escaping @Sendable () -> [UInt8], admitted counted: Bool = false) async -> Bool {
        let id = nextSession.add(1, ordering: .relaxed).newValue
        let (frames, outlet) = AsyncStream.makeStream(of: [UInt8].self, bufferingPolicy: .bufferingNewest(4))
        outlets.withLock { $0[id] = outlet }
        // The status counts what the limit counts: a listener's admitted connections.
        monitor.book.update(monitor.index) { $0.connections = counted ? self.admitted.load(ordering: .relaxed) : self.sessionCount }
        defer {
            _ = outlets.withLock { $0.removeValue(forKey: id) }
            if counted { admitted.subtract(1, ordering: .relaxed) }
            monitor.book.update(monitor.index) { $0.connections = counted ? self.admitted.load(ordering: .relaxed) : self.sessionCount }
        }
        outlet.yield(pulse())  // at once, so the peer need not wait an interval
        let progress = SessionProgress()
        let channel = session.channel
        let timeout = monitor.config.timeout
        do {
            try await session.executeThenClose { inbound, outbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await frame in frames { try await outbound.write(ByteBuffer(bytes: frame)) }
                    }
                    group.addTask {
                        // The idle watch: a connection with no valid frame for the timeout is closed.
                        while true {
                            try await Task.sleep(for: .seconds(min(0.25, timeout / 4)))
                            if MonotonicTime.now() - progress.lastValid.withLock({ $0 }) > timeout {
                                self.log.notice("no valid frame for \(timeout) s; closing the connection", category: "idle")
                                channel.close(promise: nil)
                                return
                            }
                        }
                    }
                    group.addTask {
                        defer { outlet.finish() }
                        var window = (start: MonotonicTime.now(), count: 0)
                        for try await buffer in inbound {
                            let now = MonotonicTime.now()
                            if now - window.start >= 1 { window = (now, 0) }
                            window.count += 1
                            if window.count > self.maxFramesPerSecond {
                                self.log.warning("more than \(self.maxFramesPerSecond) frames in a second: a flood; closing the connection", category: "flood")
                                return
                            }
                            guard self.take(buffer, now: now) else { return }
                            progress.accepted.store(true, ordering: .relaxed)
                            progress.lastValid.withLock { $0 = now }
                        }
                    }
                    // The reader ending (peer closed, bad frame, flood) or the idle watch ends the session.
                    _ = try await group.next()
                    group.cancelAll()
                    channel.close(promise: nil)
                }
            }
        } catch {
            if !Task.isCancelled { log.notice("connection ended: \(error)", category: "ended") }
        }
        outlet.finish()
        return progress.accepted.load(ordering: .relaxed)
    }

    /// Checks one frame; a pulse counts, a notice is recorded. Returns false when the
    /// connection must end (bytes that are not a frame of ours: no resynchronising).
    /// A replay keeps the connection (the stream itself is still in step) but is counted.
    func take(_ buffer: ByteBuffer, now: Double) -> Bool {
        do throws(PulseError) {
            let frame = try PulseFrame.decode(buffer.readableBytesView, key: key)
            try verifier.withLock { v throws(PulseError) in try v.accept(frame, now: MonotonicTime.wallNow()) }
            monitor.pulse(at: now)
            if frame.kind == .notice {
                onNotice(LinkStatus.Notice(time: MonotonicTime.wallNow(), from: frame.sender, link: frame.subject, state: frame.state))
            }
            return true
        } catch {
            monitor.book.update(monitor.index) { s in
                s.rejected &+= 1
                if error.isReplay { s.replayed &+= 1 }
                if error == .forged { s.forged &+= 1 }
                s.lastProblem = error.description
            }
            log.warning("refused a frame: \(error)", category: error.isReplay ? "replay" : "refused")
            switch error {
            case .replayed, .staleIncarnation, .skewed, .wrongSender: return true
            default: return false
            }
        }
    }
}

/// When a session last took a valid frame, and whether it ever did.
final class SessionProgress: Sendable {
    let lastValid = Mutex(MonotonicTime.now())
    let accepted = Atomic<Bool>(false)
}

/// Cuts the stream into 128-byte frames; holds at most one partial frame.
struct PulseFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = buffer.readSlice(length: PulseFrame.size) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }
}

/// A link's log lines, at most one per category every 10 s: a peer that floods or lies
/// cannot fill the journal. A line says how many like it were held back.
final class RateLimitedLog: Sendable {
    let logger: Logger
    let link: String
    private let last = Mutex<[String: (time: Double, held: Int)]>([:])
    static let every = 10.0

    init(logger: Logger, link: String) {
        self.logger = logger
        self.link = link
    }

    private func pass(_ category: String) -> Int? {
        let now = MonotonicTime.now()
        return last.withLock { seen in
            if let s = seen[category], now - s.time < Self.every {
                seen[category]?.held += 1
                return nil
            }
            let held = seen[category]?.held ?? 0
            seen[category] = (now, 0)
            return held
        }
    }

    private func line(_ message: String, _ held: Int) -> Logger.Message {
        "heartbeat link \(link): \(message)\(held > 0 ? " (and \(held) more like it)" : "")"
    }

    func info(_ message: String) { logger.info(line(message, 0)) }
    func notice(_ message: String, category: String) { if let held = pass(category) { logger.notice(line(message, held)) } }
    func warning(_ message: String, category: String) { if let held = pass(category) { logger.warning(line(message, held)) } }
    func error(_ message: String, category: String) { if let held = pass(category) { logger.error(line(message, held)) } }
}
