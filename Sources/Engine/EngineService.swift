import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// `vmpulse engine run`: one `HostPoller` per agent, each in a task of its own, writing
/// through one `StoreKeeper`. Stops on graceful shutdown (SIGTERM, SIGINT): each poller
/// finishes the call it is in at most `poll.timeout` later.
public final class EngineService: Service, Sendable {
    public let config: EngineConfig
    public let keeper: StoreKeeper
    let logger: Logger

    public init(config: EngineConfig, logger: Logger) throws(EngineConfigError) {
        self.config = config
        self.logger = logger
        keeper = StoreKeeper(location: try StoreLocation.parse(config.database), logger: logger)
    }

    /// Reads each agent's token file (first line); a missing or unreadable one is an error at start.
    public static func token(_ endpoint: AgentEndpoint) throws(EngineConfigError) -> String? {
        guard let file = endpoint.tokenFile else { return nil }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8),
              let line = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }), !line.isEmpty else {
            throw EngineConfigError(key: "agents.token_file", message: "cannot read a token from \(file) (agent \(endpoint.name))")
        }
        return line
    }

    static let shutdownGrace = Duration.seconds(5)

    /// Runs `body`, waiting at most `limit`; false when it had not finished by then (it goes on
    /// unwaited, and ends with the process).
    static func within(_ limit: Duration, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        let done = Mutex(false)
        Task {
            await body()
            done.withLock { $0 = true }
        }
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if done.withLock({ $0 }) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return done.withLock { $0 }
    }

    public func run() async throws {
        var timeouts = HTTPClient.Configuration.Timeout()
        timeouts.connect = .milliseconds(Int64(min(config.timeout, 5) * 1000))
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                                configuration: HTTPClient.Configuration(timeout: timeouts))
        var pollers: [HostPoller] = []
        var listeners: [EventListener] = []
        for a in config.agents {
            let token = try Self.token(a)
            let rpc = AgentRPC(endpoint: a, client: client, token: token, timeout: config.timeout)
            let poller = HostPoller(rpc: rpc, config: config, keeper: keeper, logger: logger)
            pollers.append(poller)
            if config.events { listeners.append(EventListener(endpoint: a, token: token, poller: poller, logger: logger)) }
        }
        logger.info("vmpulse engine polling \(pollers.count) agent(s) every \(config.runtimeInterval) s, fleet store \((try? StoreLocation.parse(config.database).shown) ?? "?")")
        // Unstructured tasks, so that shutdown is bounded: a poller whose call does not
        // answer its cancellation at once (a pool waiting on a server that went away) is
        // left behind after `shutdownGrace`, not waited for.
        let tasks = pollers.map { p in Task { await p.run() } } + listeners.map { l in Task { await l.run() } }
        try? await gracefulShutdown()
        for t in tasks { t.cancel() }
        let keeper = self.keeper
        let finished = await Self.within(Self.shutdownGrace) {
            for t in tasks { await t.value }
            await keeper.close()
        }
        if !finished { logger.warning("vmpulse engine: a poller or the fleet store did not stop within \(Self.shutdownGrace); stopping anyway") }
        try? await client.shutdown()
        logger.info("vmpulse engine stopped")
    }
}
