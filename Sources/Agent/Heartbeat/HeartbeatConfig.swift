import Glibc
import Hypervisor
import VMPulseCore
import Yams

/// `heartbeat:` in the agent's configuration: who this agent is to its peers, the key they
/// share, and the links it watches.
public struct HeartbeatSettings: Sendable, Equatable {
    /// This agent's name in its pulses (a peer's `peer:`); default: the host name.
    public var name = ""
    public var keyFile: String?
    /// Seconds a pulse's timestamp may be off this host's clock.
    public var maxClockSkew: Double = 30
    public var links: [HeartbeatLinkConfig] = []

    public init() {}

    static let keys: Set<String> = ["name", "key_file", "max_clock_skew", "links"]

    /// The name pulses carry: `name`, or the host name cut to a frame's 32 bytes.
    public var senderName: String {
        if !name.isEmpty { return name }
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "vmpulse" }
        let host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return String(decoding: Array(host.utf8.prefix(PulseFrame.maxName)), as: UTF8.self).isEmpty ? "vmpulse" : host
    }
}

/// One heartbeat link.
public struct HeartbeatLinkConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Another vmpulse agent over TCP: this side listens on, or connects to, `address`;
        /// `peer` is the name the other agent signs its pulses with.
        case peer(peer: String, address: String, listens: Bool)
        /// A guest of this host, by VM name or UUID: its guest agent's `guest-ping`.
        case guest(vm: String)
        /// A TCP service at `address` (HOST:PORT): alive while a connection opens, and when
        /// `send` is given, while the answer to it contains `expect`.
        case service(address: String, send: String?, expect: String?)
    }

    public enum Detector: Sendable, Equatable {
        case fixed
        /// Phi accrual; nil fields take defaults scaled to the interval.
        case phi(threshold: Double, minStdDeviation: Double?, acceptablePause: Double?)
    }

    public var name: String
    public var kind: Kind
    /// Seconds between pulses (or probes).
    public var interval: Double = 1
    /// Seconds without a pulse after which the fixed detector says dead.
    public var timeout: Double = 5
    public var detector: Detector = .fixed
    /// Good pulses in a row that bring a dead link back.
    public var recoveryPulses = 3
    public var onSuspect: [HeartbeatAction] = []
    public var onDead: [HeartbeatAction] = []
    public var onAlive: [HeartbeatAction] = []

    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }

    /// The actions a state change runs: `on_suspect` when the link turns suspect, `on_dead`
    /// when it dies, `on_alive` when it comes back from dead (a suspect link that recovers
    /// had nothing to recover from).
    public func actions(from: LinkState, to: LinkState) -> [HeartbeatAction] {
        switch to {
        case .alive: from == .dead ? onAlive : []
        case .suspect: onSuspect
        case .dead: onDead
        }
    }

    /// The most connections a listening link holds (its peer, and a reconnect racing the old one).
    public static let maxPeerConnections = 4
}

/// What a link does when its state changes: only ever what the local file says.
public enum HeartbeatAction: Sendable, Equatable, CustomStringConvertible {
    /// A program with `name=value` lines on its standard input, killed after `timeout`.
    case program(path: String, arguments: [String], timeout: Double)
    /// A command to a VM of this host, by name or UUID, through the backend.
    case vm(name: String, command: VMAction)
    /// A notice to another agent over the heartbeat link named here.
    case notify(link: String)
    /// An error-level log line and a JSON POST to `url`, tried `retries` more times.
    case webhook(url: String, retries: Int, timeout: Double)

    public var description: String {
        switch self {
        case .program(let path, _, _): "program \(path)"
        case .vm(let name, let command): "\(Self.qmpName(command)) to VM \(name)"
        case .notify(let link): "notice over link \(link)"
        case .webhook(let url, _, _): "webhook \(url)"
        }
    }

    /// The commands an action may send, by their QMP names.
    static let commands: [String: VMAction] = ["stop": .pause, "cont": .resume, "system_reset": .reset, "system_powerdown": .powerdown, "quit": .kill]
    static func qmpName(_ action: VMAction) -> String { commands.first { $0.value == action }?.key ?? action.rawValue }
}

extension ConfigReader {
    static func heartbeat(_ node: Node, _ key: String, into h: inout HeartbeatSettings) throws(ConfigError) {
        for (n, v) in try ConfigReader(node: node, path: key).entries(known: HeartbeatSettings.keys) {
            let k = key + "." + n
            switch n {
            case "name": h.name = try string(v, k)
            case "key_file": h.keyFile = try string(v, k)
            case "max_clock_skew": h.maxClockSkew = try number(v, k)
            default:
                guard let items = v.sequence else { throw ConfigError(key: k, message: "expected a list of links") }
                h.links = try items.enumerated().map { (i, item) throws(ConfigError) in try link(item, "\(k)[\(i)]") }
            }
        }
    }

    private static let linkKeys: Set<String> = [
        "name", "peer", "listen", "connect", "guest", "service", "send", "expect", "interval", "timeout", "detector",
        "phi_threshold", "min_std_deviation", "acceptable_pause", "recovery_pulses", "on_suspect", "on_dead", "on_alive",
    ]

    static func link(_ node: Node, _ k: String) throws(ConfigError) -> HeartbeatLinkConfig {
        var f: [String: Node] = [:]
        for (name, value) in try ConfigReader(node: node, path: k).entries(known: linkKeys) { f[name] = value }
        func text(_ name: String) throws(ConfigError) -> String? { try f[name].map { (n) throws(ConfigError) in try string(n, "\(k).\(name)") } }
        func num(_ name: String) throws(ConfigError) -> Double? { try f[name].map { (n) throws(ConfigError) in try number(n, "\(k).\(name)") } }
        guard let name = try text("name") else { throw ConfigError(key: "\(k).name", message: "required: a name for the link (in logs, status and notices)") }
        let kinds = ["peer", "guest", "service"].filter { f[$0] != nil }
        guard kinds.count == 1 else { throw ConfigError(key: k, message: "give exactly one of peer (with listen or connect), guest or service") }
        let kind: HeartbeatLinkConfig.Kind
        if let peer = try text("peer") {
            let listen = try text("listen"), connect = try text("connect")
            guard (listen == nil) != (connect == nil), let address = listen ?? connect else {
                throw ConfigError(key: k, message: "a peer link needs either listen: HOST:PORT or connect: HOST:PORT")
            }
            kind = .peer(peer: peer, address: address, listens: listen != nil)
        } else if let vm = try text("guest") {
            kind = .guest(vm: vm)
        } else {
            let send = try text("send"), expect = try text("expect")
            guard (send == nil) == (expect == nil) else { throw ConfigError(key: k, message: "send and expect go together") }
            kind = .service(address: try text("service") ?? "", send: send, expect: expect)
        }
        if case .peer = kind {} else if f["listen"] != nil || f["connect"] != nil {
            throw ConfigError(key: k, message: "listen and connect are for peer links")
        }
        var link = HeartbeatLinkConfig(name: name, kind: kind)
        link.interval = try num("interval") ?? 1
        link.timeout = try num("timeout") ?? 5
        if let n = f["recovery_pulses"] { link.recoveryPulses = try integer(n, "\(k).recovery_pulses") }
        switch try text("detector") ?? "fixed" {
        case "fixed":
            for extra in ["phi_threshold", "min_std_deviation", "acceptable_pause"] where f[extra] != nil {
                throw ConfigError(key: "\(k).\(extra)", message: "only for detector: phi")
            }
        case "phi":
            link.detector = .phi(threshold: try num("phi_threshold") ?? 8, minStdDeviation: try num("min_std_deviation"),
                                 acceptablePause: try num("acceptable_pause"))
        case let other:
            throw ConfigError(key: "\(k).detector", message: "'\(other)' is not a detector (fixed or phi)")
        }
        link.onSuspect = try actions(f["on_suspect"], "\(k).on_suspect")
        link.onDead = try actions(f["on_dead"], "\(k).on_dead")
        link.onAlive = try actions(f["on_alive"], "\(k).on_alive")
        return link
    }

    private static let actionKeys: Set<String> = ["program", "args", "timeout", "vm", "command", "notify", "webhook", "retries"]

    static func actions(_ node: Node?, _ key: String) throws(ConfigError) -> [HeartbeatAction] {
        guard let node else { return [] }
        guard let items = node.sequence else { throw ConfigError(key: key, message: "expected a list of actions") }
        var result: [HeartbeatAction] = []
        for (i, item) in items.enumerated() {
            let k = "\(key)[\(i)]"
            var f: [String: Node] = [:]
            for (name, value) in try ConfigReader(node: item, path: k).entries(known: actionKeys) { f[name] = value }
            let kinds = ["program", "vm", "notify", "webhook"].filter { f[$0] != nil }
            guard kinds.count == 1 else { throw ConfigError(key: k, message: "give exactly one of program, vm (with command), notify or webhook") }
            let timeout = try f["timeout"].map { (n) throws(ConfigError) in try number(n, "\(k).timeout") }
            if let t = timeout, !(t > 0 && t <= 3600) { throw ConfigError(key: "\(k).timeout", message: "must be between 0 and 3600 seconds, got \(t)") }
            switch kinds[0] {
            case "program":
                var arguments: [String] = []
                if let list = f["args"] {
                    guard let seq = list.sequence else { throw ConfigError(key: "\(k).args", message: "expected a list of text") }
                    arguments = try seq.map { (n) throws(ConfigError) in try string(n, "\(k).args") }
                }
                result.append(.program(path: try string(f["program"] ?? node, "\(k).program"), arguments: arguments, timeout: timeout ?? 30))
            case "vm":
                let vm = try string(f["vm"] ?? node, "\(k).vm")
                guard let c = f["command"] else { throw ConfigError(key: "\(k).command", message: "required with vm: one of \(HeartbeatAction.commands.keys.sorted().joined(separator: ", "))") }
                let name = try string(c, "\(k).command")
                guard let command = HeartbeatAction.commands[name] else {
                    throw ConfigError(key: "\(k).command", message: "'\(name)' is not a command an action may send (\(HeartbeatAction.commands.keys.sorted().joined(separator: ", ")))")
                }
                result.append(.vm(name: vm, command: command))
            case "notify":
                result.append(.notify(link: try string(f["notify"] ?? node, "\(k).notify")))
            default:
                let url = try string(f["webhook"] ?? node, "\(k).webhook")
                guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw ConfigError(key: "\(k).webhook", message: "'\(url)' is not an http:// or https:// URL") }
                let retries = try f["retries"].map { (n) throws(ConfigError) in try integer(n, "\(k).retries") } ?? 3
                guard (0...10).contains(retries) else { throw ConfigError(key: "\(k).retries", message: "must be between 0 and 10") }
                result.append(.webhook(url: url, retries: retries, timeout: timeout ?? 5))
            }
            for (extra, allowed) in [("args", "program"), ("command", "vm"), ("retries", "webhook")] where f[extra] != nil && kinds[0] != allowed {
                throw ConfigError(key: "\(k).\(extra)", message: "only for \(allowed) actions")
            }
        }
        return result
    }
}

extension HeartbeatSettings {
    /// Ranges and references the types alone do not check.
    func validate() throws(ConfigError) {
        guard name.utf8.count <= PulseFrame.maxName, !name.utf8.contains(0) else {
            throw ConfigError(key: "heartbeat.name", message: "at most \(PulseFrame.maxName) bytes of UTF-8 text")
        }
        guard (1...86_400).contains(maxClockSkew) else { throw ConfigError(key: "heartbeat.max_clock_skew", message: "must be between 1 and 86400 seconds") }
        let names = links.map(\.name)
        for (i, link) in links.enumerated() {
            let k = "heartbeat.links[\(i)]"
            guard link.name.utf8.count <= PulseFrame.maxName else { throw ConfigError(key: k + ".name", message: "at most \(PulseFrame.maxName) bytes") }
            if let j = names[..<i].firstIndex(of: link.name) { throw ConfigError(key: k + ".name", message: "'\(link.name)' is also the name of heartbeat.links[\(j)]") }
            guard (0.05...3600).contains(link.interval) else { throw ConfigError(key: k + ".interval", message: "must be between 0.05 and 3600 seconds, got \(link.interval)") }
            guard link.timeout > link.interval, link.timeout <= 86_400 else {
                throw ConfigError(key: k + ".timeout", message: "must be more than the interval (\(link.interval)) and at most 86400 seconds, got \(link.timeout)")
            }
            guard (1...100).contains(link.recoveryPulses) else { throw ConfigError(key: k + ".recovery_pulses", message: "must be between 1 and 100") }
            if case .phi(let threshold, let std, let pause) = link.detector {
                guard (0.5...100).contains(threshold) else { throw ConfigError(key: k + ".phi_threshold", message: "must be between 0.5 and 100") }
                if let std, !(0.001...3600).contains(std) { throw ConfigError(key: k + ".min_std_deviation", message: "must be between 0.001 and 3600 seconds") }
                if let pause, !(0...86_400).contains(pause) { throw ConfigError(key: k + ".acceptable_pause", message: "must be between 0 and 86400 seconds") }
            }
            switch link.kind {
            case .peer(let peer, let address, _):
                guard !peer.isEmpty, peer.utf8.count <= PulseFrame.maxName else { throw ConfigError(key: k + ".peer", message: "1 to \(PulseFrame.maxName) bytes") }
                _ = try Self.hostPort(address, key: k)
                guard keyFile != nil else { throw ConfigError(key: "heartbeat.key_file", message: "required for peer links: the key both agents share") }
            case .service(let address, _, let expect):
                _ = try Self.hostPort(address, key: k + ".service")
                if let expect, expect.utf8.count > 256 { throw ConfigError(key: k + ".expect", message: "at most 256 bytes") }
            case .guest: break
            }
            for action in link.onSuspect + link.onDead + link.onAlive {
                if case .notify(let target) = action {
                    guard let other = links.first(where: { $0.name == target }) else {
                        throw ConfigError(key: k, message: "notify: '\(target)' is not a heartbeat link (known: \(names.joined(separator: ", ")))")
                    }
                    guard case .peer = other.kind else { throw ConfigError(key: k, message: "notify: '\(target)' is not a peer link: only another agent can be notified") }
                }
            }
        }
    }

    static func hostPort(_ text: String, key: String) throws(ConfigError) -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port), colon > text.startIndex else {
            throw ConfigError(key: key, message: "'\(text)' is not HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// What only the host can say, checked at the agent's start: the key file and every
    /// action's program.
    public func checkOnHost() throws(ConfigError) {
        if let keyFile { _ = try HeartbeatKey.load(path: keyFile) }
        for (i, link) in links.enumerated() {
            for (state, actions) in [("on_suspect", link.onSuspect), ("on_dead", link.onDead), ("on_alive", link.onAlive)] {
                for (j, action) in actions.enumerated() {
                    guard case .program(let path, _, _) = action else { continue }
                    let k = "heartbeat.links[\(i)].\(state)[\(j)].program"
                    guard path.hasPrefix("/") else { throw ConfigError(key: k, message: "'\(path)' is not an absolute path") }
                    var st = stat()
                    guard stat(path, &st) == 0 else { throw ConfigError(key: k, message: "\(path): \(String(cString: strerror(errno)))") }
                    guard (st.st_mode & S_IFMT) == S_IFREG, access(path, X_OK) == 0 else { throw ConfigError(key: k, message: "\(path) is not an executable file") }
                }
            }
        }
    }
}
