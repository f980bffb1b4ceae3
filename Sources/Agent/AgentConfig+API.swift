import Yams

/// The host API's bounds and access (`api:` in the configuration, beside `idle_timeout`
/// and `max_connections`).
public struct APISettings: Sendable, Equatable {
    /// A file of bearer tokens, one per line (`api.token_file`); unset, the API asks for
    /// none, which is only allowed on a loopback listener.
    public var tokenFile: String?
    /// The largest request body or WebSocket message, in bytes (`api.max_body_bytes`).
    public var maxBodyBytes = 1 << 20
    /// The most calls in one JSON-RPC batch (`api.max_batch`).
    public var maxBatch = 1000
    /// The most WebSocket connections at once (`api.max_subscribers`).
    public var maxSubscribers = 16
    /// Messages queued for a WebSocket client before one that does not read is cut off
    /// (`api.subscriber_backlog`).
    public var subscriberBacklog = 1024

    public init() {}

    static let keys: Set<String> = ["idle_timeout", "max_connections", "token_file", "max_body_bytes", "max_batch", "max_subscribers", "subscriber_backlog"]

    mutating func read(_ name: String, _ node: Node, _ key: String) throws(ConfigError) {
        switch name {
        case "token_file": tokenFile = try ConfigReader.string(node, key)
        case "max_body_bytes": maxBodyBytes = try ConfigReader.integer(node, key)
        case "max_batch": maxBatch = try ConfigReader.integer(node, key)
        case "max_subscribers": maxSubscribers = try ConfigReader.integer(node, key)
        default: subscriberBacklog = try ConfigReader.integer(node, key)
        }
    }

    func validate(listenHost: String) throws(ConfigError) {
        try Self.range("api.max_body_bytes", maxBodyBytes, 1024...(64 << 20))
        try Self.range("api.max_batch", maxBatch, 1...100_000)
        try Self.range("api.max_subscribers", maxSubscribers, 0...4096)
        try Self.range("api.subscriber_backlog", subscriberBacklog, 1...1_000_000)
        guard tokenFile != nil || Self.isLoopback(listenHost) else {
            throw ConfigError(key: "listen", message: "'\(listenHost)' is not a loopback address: the API would be open to the network; set api.token_file to a file of bearer tokens")
        }
    }

    static func range(_ key: String, _ value: Int, _ range: ClosedRange<Int>) throws(ConfigError) {
        guard range.contains(value) else {
            throw ConfigError(key: key, message: "must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
        }
    }

    /// Whether a listen host reaches only this machine: `localhost`, 127.0.0.0/8 or ::1.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if h == "localhost" || h == "::1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

extension APISettings {
    /// The tokens in `tokenFile`: one per line, blank lines and `#` comments skipped;
    /// none when no file is set. A file that cannot be read, or holds no token, or a token
    /// shorter than 16 characters, is an error: the API must not start open by mistake.
    public func loadTokens() throws(ConfigError) -> [String] {
        guard let tokenFile else { return [] }
        guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
            throw ConfigError(file: tokenFile, key: "api.token_file", message: "cannot read the token file (does it exist, may vmpulse read it?)")
        }
        let tokens = text.split(whereSeparator: \.isNewline)
            .map { line in String(line.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !tokens.isEmpty else {
            throw ConfigError(file: tokenFile, key: "api.token_file", message: "the token file holds no token (one per line)")
        }
        if let short = tokens.firstIndex(where: { $0.count < 16 }) {
            throw ConfigError(file: tokenFile, key: "api.token_file", message: "token \(short + 1) is shorter than 16 characters: too easy to guess")
        }
        return tokens
    }
}
