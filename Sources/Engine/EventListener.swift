import HTTPTypes
import HummingbirdWSClient
import Logging
import VMPulseCore

/// Subscribes to one agent's pushed events (WebSocket `/rpc`, `subscribe`), so that a VM's
/// status change reaches the fleet store at once instead of at the next poll. Reconnects
/// with a backoff of 1 s doubling to 10 s while the agent is away; the poller goes on
/// either way, so a lost event costs at most one poll interval.
struct EventListener: Sendable {
    let endpoint: AgentEndpoint
    let token: String?
    let poller: HostPoller
    let logger: Logger

    /// The largest event message taken (an agent's are a few hundred bytes).
    static let maxMessageBytes = 1 << 20

    func run() async {
        var delay = 1.0
        while !Task.isCancelled {
            let started = ContinuousClock.now
            do {
                try await listen()
            } catch {
                logger.debug("events of agent \(endpoint.name): \(error)")
            }
            if ContinuousClock.now - started > .seconds(30) { delay = 1 }
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            delay = min(delay * 2, 10)
        }
    }

    func listen() async throws {
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        var headers = HTTPFields()
        if let token, let name = HTTPField.Name("Authorization") { headers[name] = "Bearer \(token)" }
        let poller = self.poller
        _ = try await WebSocketClient.connect(
            url: "ws://\(host):\(endpoint.port)/rpc", configuration: .init(maxFrameSize: Self.maxMessageBytes, additionalHeaders: headers),
            logger: logger
        ) { inbound, outbound, _ in
            try await outbound.write(.text(#"{"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"kinds": ["status"]}}"#))
            for try await message in inbound.messages(maxSize: Self.maxMessageBytes) {
                guard case .text(let text) = message, let value = try? JSONParser.parse(Array(text.utf8)),
                      value["method"] == "event", let params = value["params"], params["kind"] == "status",
                      let uuid = params["vmId"]?.stringValue, !uuid.isEmpty, uuid.utf8.count <= 200,
                      let status = params["data"]?["status"]?.stringValue, !status.isEmpty, status.utf8.count <= 100 else { continue }
                await poller.statusEvent(uuid: uuid, status: status)
            }
        }
    }
}
