import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle

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
        logger.info("vmpulse engine polling \(pollers.count) agent(s) every \(config.runtimeInterval) s, fleet store \(config.database)")
        await withTaskGroup(of: Void.self) { group in
            for p in pollers { group.addTask { await p.run() } }
            for l in listeners { group.addTask { await l.run() } }
            group.addTask {
                try? await gracefulShutdown()
            }
            await group.next()
            group.cancelAll()
        }
        await keeper.close()
        try? await client.shutdown()
        logger.info("vmpulse engine stopped")
    }
}
