import Foundation
import Yams

/// One agent the engine polls: a name of the operator's choosing (the host's key in the
/// fleet store), where its API listens, and the token file its API wants, if any.
public struct AgentEndpoint: Sendable, Equatable {
    public var name: String
    public var host: String
    public var port: Int
    public var tokenFile: String?

    public init(name: String, host: String, port: Int, tokenFile: String? = nil) {
        self.name = name
        self.host = host
        self.port = port
        self.tokenFile = tokenFile
    }

    /// `NAME=HOST:PORT` (the `--agents` form) or `HOST:PORT` (named after its address).
    public static func parse(_ text: String, key: String) throws(EngineConfigError) -> AgentEndpoint {
        let name: String, address: Substring
        if let eq = text.firstIndex(of: "=") {
            name = String(text[..<eq])
            address = text[text.index(after: eq)...]
        } else {
            name = text
            address = Substring(text)
        }
        let (host, port) = try hostPort(address, key: key)
        return AgentEndpoint(name: name, host: host, port: port)
    }

    static func hostPort(_ address: Substring, key: String) throws(EngineConfigError) -> (String, Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else {
            throw EngineConfigError(key: key, message: "'\(address)' is not HOST:PORT")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw EngineConfigError(key: key, message: "'\(address)' has no host") }
        return (host, port)
    }
}

/// The engine's configuration (`vmpulse engine run --config FILE`). Every key has a
/// default but `agents`; flags override the file; unknown keys are errors naming the key.
public struct EngineConfig: Sendable, Equatable {
    public var agents: [AgentEndpoint] = []
    /// Where the fleet store lives: a SQLite file path (or `sqlite:PATH`), or a PostgreSQL URL
    /// (`postgres://USER@HOST:PORT/DB`, or `postgres:///DB?host=/run/postgresql` for a socket).
    public var database = "/var/lib/vmpulse/fleet.sqlite"
    /// Seconds between `Host.getAllVmRuntimeStats` calls to each agent.
    public var runtimeInterval: Double = 3
    /// Seconds between `Host.getAllVmDeviceStats` calls.
    public var deviceInterval: Double = 300
    /// Seconds between copies of each agent's ledger (`Host.getBillingRecords`).
    public var billingInterval: Double = 60
    /// Seconds one call may take before the host counts as not answering.
    public var timeout: Double = 5
    /// A host that has not answered for this many runtime intervals is stale.
    public var staleAfter = 2
    /// Whether to subscribe to each agent's events (a status change seen before the next poll).
    public var events = true

    public init() {}

    public static let defaultPath = "/etc/vmpulse/engine.yaml"

    static let keys: Set<String> = ["agents", "database", "poll", "events"]
    static let pollKeys: Set<String> = ["runtime_interval", "device_interval", "billing_interval", "timeout", "stale_after"]
    static let agentKeys: Set<String> = ["name", "address", "token_file"]

    public func validate() throws(EngineConfigError) {
        guard !agents.isEmpty else { throw EngineConfigError(key: "agents", message: "names no agent (give at least one, or --agents NAME=HOST:PORT)") }
        var seen: Set<String> = []
        for a in agents {
            guard !a.name.isEmpty, a.name.utf8.count <= 200 else { throw EngineConfigError(key: "agents.name", message: "must be 1 to 200 characters") }
            guard seen.insert(a.name).inserted else {
                throw EngineConfigError(key: "agents", message: "two agents are named '\(a.name)'; each host needs a name of its own")
            }
        }
        let ranges: [(String, Double, ClosedRange<Double>)] = [
            ("poll.runtime_interval", runtimeInterval, 0.1...3600), ("poll.device_interval", deviceInterval, 1...86_400),
            ("poll.billing_interval", billingInterval, 0.1...86_400), ("poll.timeout", timeout, 0.1...600),
        ]
        for (key, value, range) in ranges where !range.contains(value) {
            throw EngineConfigError(key: key, message: "must be between \(range.lowerBound) and \(range.upperBound) seconds, got \(value)")
        }
        guard (1...1000).contains(staleAfter) else { throw EngineConfigError(key: "poll.stale_after", message: "must be 1 to 1000 polls, got \(staleAfter)") }
        _ = try StoreLocation.parse(database)
    }

    public static func load(file: String) throws(EngineConfigError) -> EngineConfig {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw EngineConfigError(file: file, key: "", message: "cannot read the file (does it exist, is it UTF-8 text?)")
        }
        do {
            return try parse(yaml: text)
        } catch var error {
            error.file = file
            throw error
        }
    }

    /// Parses YAML over the defaults; `validate` is the caller's, after flags are applied.
    public static func parse(yaml: String) throws(EngineConfigError) -> EngineConfig {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch { throw EngineConfigError(key: "", message: "not valid YAML: \(error)") }
        var c = EngineConfig()
        guard let root else { return c }
        for (name, value) in try entries(root, "", known: keys) {
            switch name {
            case "database": c.database = try string(value, name)
            case "events":
                guard value.scalar != nil, let b = value.bool else {
                    throw EngineConfigError(key: name, message: "expected true or false, got '\(value.scalar?.string ?? "a structure")'")
                }
                c.events = b
            case "agents":
                guard let items = value.sequence else { throw EngineConfigError(key: name, message: "expected a list of agents") }
                c.agents = try items.enumerated().map { (i, item) throws(EngineConfigError) in try agent(item, "agents[\(i)]") }
            default:
                for (n, v) in try entries(value, "poll", known: pollKeys) {
                    let k = "poll." + n
                    switch n {
                    case "runtime_interval": c.runtimeInterval = try number(v, k)
                    case "device_interval": c.deviceInterval = try number(v, k)
                    case "billing_interval": c.billingInterval = try number(v, k)
                    case "timeout": c.timeout = try number(v, k)
                    default:
                        guard let s = v.scalar, s.style == .plain, let n = Int(s.string) else {
                            throw EngineConfigError(key: k, message: "expected an integer, got '\(v.scalar?.string ?? "a structure")'")
                        }
                        c.staleAfter = n
                    }
                }
            }
        }
        return c
    }

    static func agent(_ node: Node, _ key: String) throws(EngineConfigError) -> AgentEndpoint {
        var name: String?, address: String?, token: String?
        for (n, v) in try entries(node, key, known: agentKeys) {
            switch n {
            case "name": name = try string(v, key + ".name")
            case "address": address = try string(v, key + ".address")
            default: token = try string(v, key + ".token_file")
            }
        }
        guard let address else { throw EngineConfigError(key: key + ".address", message: "is required (HOST:PORT of the agent's API)") }
        let (host, port) = try AgentEndpoint.hostPort(Substring(address), key: key + ".address")
        return AgentEndpoint(name: name ?? address, host: host, port: port, tokenFile: token)
    }

    static func entries(_ node: Node, _ path: String, known: Set<String>) throws(EngineConfigError) -> [(String, Node)] {
        guard let mapping = node.mapping else { throw EngineConfigError(key: path, message: "expected a mapping of keys to values") }
        var out: [(String, Node)] = []
        for (k, v) in mapping {
            guard let name = k.string else { throw EngineConfigError(key: path, message: "a key that is not text") }
            let full = path.isEmpty ? name : path + "." + name
            guard known.contains(name) else {
                throw EngineConfigError(key: full, message: "unknown key (known here: \(known.sorted().joined(separator: ", ")))")
            }
            out.append((name, v))
        }
        return out
    }

    static func string(_ node: Node, _ key: String) throws(EngineConfigError) -> String {
        guard let s = node.scalar, s.style != .literal, s.style != .folded, !s.string.isEmpty else {
            throw EngineConfigError(key: key, message: "expected text")
        }
        return s.string
    }

    // Numbers from the scalar's text with Swift's parser, as the agent's configuration does
    // (Yams' own takes base-60 forms and traps on some).
    static func number(_ node: Node, _ key: String) throws(EngineConfigError) -> Double {
        guard let s = node.scalar, s.style == .plain, let n = Double(s.string), n.isFinite else {
            throw EngineConfigError(key: key, message: "expected a number of seconds, got '\(node.scalar?.string ?? "a structure")'")
        }
        return n
    }
}

public struct EngineConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String?
    public var key: String
    public var message: String

    public init(file: String? = nil, key: String, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = [file, key.isEmpty ? nil : key].compactMap { $0 }.joined(separator: ": ")
        return place.isEmpty ? message : "\(place): \(message)"
    }
}

/// Where the fleet store is: a SQLite file or a PostgreSQL server.
public enum StoreLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(url: String)

    /// For logs and messages: a PostgreSQL URL without its password.
    public var shown: String {
        switch self {
        case .sqlite(let path): return path
        case .postgres(let url):
            guard let at = url.firstIndex(of: "@"), let scheme = url.range(of: "://"), scheme.upperBound < at else { return url }
            let userinfo = url[scheme.upperBound..<at]
            guard let colon = userinfo.firstIndex(of: ":") else { return url }
            return String(url[..<colon]) + ":***" + String(url[at...])
        }
    }

    public static func parse(_ text: String) throws(EngineConfigError) -> StoreLocation {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") { return .postgres(url: text) }
        let path = text.hasPrefix("sqlite:") ? String(text.dropFirst("sqlite:".count)) : text
        guard !path.isEmpty, !path.contains("://") else {
            throw EngineConfigError(key: "database", message: "'\(text)' is neither a SQLite file path nor a postgres:// URL")
        }
        return .sqlite(path: path)
    }
}
