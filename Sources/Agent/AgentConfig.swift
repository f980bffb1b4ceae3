import Foundation
import Hypervisor
import Yams

/// The agent's configuration. Every key has a default; a file sets some of them
/// (YAML, see the README), flags override the file. Unknown keys and wrong types
/// are errors that name the key.
public struct AgentConfig: Sendable, Equatable {
    /// How vmpulse reaches the VMs: `qmp` (a monitor socket of its own per VM, in
    /// `socketDirectory`) or `libvirt` (through libvirtd at `libvirtURI`).
    public var backend: BackendOptions.Kind = .qmp
    public var libvirtURI = "qemu:///system"
    public var socketDirectory = "/run/vmpulse/qmp"
    public var dataDirectory = "/var/lib/vmpulse"
    public var listen = "127.0.0.1:9790"
    /// Seconds between I/O passes (block counters, the `io` windows, accounting).
    public var interval: Double = 1
    /// Seconds between passes over every group.
    public var fullInterval: Double = 15
    /// Seconds one VM may take to answer before it is reported unresponsive.
    public var timeout: Double = 2
    /// Seconds between the balloon driver's guest reports (0: leave the VM's setting alone).
    public var balloonStatsPeriod = 5
    /// Switch QEMU's latency histograms on, for the `io` percentiles.
    public var latencyHistograms = true
    /// Histogram bin boundaries, in microseconds.
    public var histogramBoundariesUs: [Int] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000]
    /// The largest boundary accepted: one hour, in microseconds.
    public static let maxHistogramBoundaryUs = 3_600_000_000
    /// The boundaries in nanoseconds, as QEMU takes them (only those that fit, should a
    /// configuration built in code skip `validate`).
    public var histogramBoundariesNs: [UInt64] {
        histogramBoundariesUs.compactMap { us in
            guard us > 0 else { return nil }
            let (ns, overflow) = UInt64(us).multipliedReportingOverflow(by: 1000)
            return overflow ? nil : ns
        }
    }
    /// Seconds per billing period.
    public var period = 3600
    /// Seconds between ledger writes.
    public var flushInterval: Double = 10
    /// Seconds raw samples are kept.
    public var sampleRetention: Double = 172_800
    /// Thin disks to extend on QEMU's write-threshold event.
    public var thinDisks: [ThinDiskConfig] = []
    /// Seconds between polls of the thin disks' allocation, instead of events (0: events only).
    /// For QEMU builds without BLOCK_WRITE_THRESHOLD, and for comparison.
    public var thinPollingInterval: Double = 0
    /// Seconds an HTTP connection may stay idle (no complete request part), and the most
    /// a request may take to arrive, before the API closes it (`api.idle_timeout`).
    public var apiIdleTimeout: Double = 30
    /// The most HTTP connections the API holds at once (`api.max_connections`); a new one
    /// beyond it closes the longest-idle one, or is closed when none is idle.
    public var apiMaxConnections = 256
    /// The host API's other bounds and its tokens (`api.*`, see `AgentConfig+API.swift`).
    public var api = APISettings()
    /// The heartbeat watchdog's name, key and links (`heartbeat.*`, see `HeartbeatConfig.swift`).
    public var heartbeat = HeartbeatSettings()

    public init() {}

    /// The file the agent and `vmpulse stats` read when none is given and it exists.
    public static let defaultPath = "/etc/vmpulse/vmpulse.yaml"

    public var ledgerPath: String { dataDirectory + "/ledger.sqlite" }

    /// The backend's settings.
    public var backendOptions: BackendOptions {
        var options = BackendOptions()
        options.kind = backend
        options.socketDirectory = socketDirectory
        options.libvirtURI = libvirtURI
        options.timeout = .milliseconds(Int64(timeout * 1000))
        options.balloonStatsPeriod = balloonStatsPeriod
        return options
    }

    /// Where the VMs are found, for messages.
    public var vmSource: String {
        switch backend {
        case .qmp: "sockets in \(socketDirectory)"
        case .libvirt: "libvirt at \(libvirtURI)"
        }
    }

    /// The listen address as host and port.
    public func listenAddress() throws(ConfigError) -> (host: String, port: Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (1...65535).contains(port) else {
            throw ConfigError(key: "listen", message: "'\(listen)' is not HOST:PORT")
        }
        let host = String(listen[..<colon])
        guard !host.isEmpty else { throw ConfigError(key: "listen", message: "'\(listen)' has no host") }
        return (host, port)
    }

    /// Checks ranges that the types alone do not.
    public func validate() throws(ConfigError) {
        _ = try listenAddress()
        guard interval >= 0.1 && interval <= 3600 else { throw ConfigError(key: "sampler.interval", message: "must be between 0.1 and 3600 seconds, got \(interval)") }
        guard fullInterval >= interval && fullInterval <= 86_400 else {
            throw ConfigError(key: "sampler.full_interval", message: "must be at least sampler.interval (\(interval)) and at most 86400, got \(fullInterval)")
        }
        guard timeout > 0 && timeout <= 600 else { throw ConfigError(key: "sampler.timeout", message: "must be between 0 and 600 seconds, got \(timeout)") }
        guard balloonStatsPeriod >= 0 && balloonStatsPeriod <= 86_400 else {
            throw ConfigError(key: "sampler.balloon_stats_period", message: "must be between 0 and 86400 seconds, got \(balloonStatsPeriod)")
        }
        guard period >= 60 && period <= 31 * 86_400 else { throw ConfigError(key: "ledger.period", message: "must be between 60 and 2678400 seconds, got \(period)") }
        guard flushInterval >= 0.1 && flushInterval <= Double(period) else {
            throw ConfigError(key: "ledger.flush_interval", message: "must be between 0.1 and ledger.period (\(period)) seconds, got \(flushInterval)")
        }
        guard thinPollingInterval == 0 || (0.1...3600).contains(thinPollingInterval) else {
            throw ConfigError(key: "thin.polling_interval", message: "must be 0 (events only) or between 0.1 and 3600 seconds, got \(thinPollingInterval)")
        }
        guard sampleRetention >= 0 && sampleRetention <= 3_650 * 86_400 else {
            throw ConfigError(key: "ledger.sample_retention", message: "must be between 0 and 315360000 seconds (ten years), got \(sampleRetention)")
        }
        guard !histogramBoundariesUs.isEmpty, histogramBoundariesUs.count <= 64,
              zip(histogramBoundariesUs, histogramBoundariesUs.dropFirst()).allSatisfy({ $0 < $1 }), (histogramBoundariesUs.first ?? 0) > 0,
              (histogramBoundariesUs.last ?? 0) <= Self.maxHistogramBoundaryUs
        else {
            throw ConfigError(key: "io.histogram_boundaries_us",
                              message: "must be 1 to 64 increasing numbers of microseconds, from 1 to \(Self.maxHistogramBoundaryUs) (one hour), got \(histogramBoundariesUs)")
        }
        guard (0.1...3600).contains(apiIdleTimeout) else {
            throw ConfigError(key: "api.idle_timeout", message: "must be between 0.1 and 3600 seconds, got \(apiIdleTimeout)")
        }
        guard (1...Self.maxAPIConnections).contains(apiMaxConnections) else {
            throw ConfigError(key: "api.max_connections", message: "must be between 1 and \(Self.maxAPIConnections), got \(apiMaxConnections)")
        }
        try api.validate(listenHost: listenAddress().host)
        try ThinDiskConfig.checkDuplicates(thinDisks)
        try heartbeat.validate()
    }

    /// The largest `api.max_connections`: each connection is a descriptor.
    public static let maxAPIConnections = 65_536
}

/// A configuration problem, naming the file and the key.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String?
    public var key: String
    public var message: String

    public init(file: String? = nil, key: String, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = key.isEmpty ? "" : "'\(key)': "
        return (file.map { "\($0): " } ?? "") + place + message
    }
}

extension AgentConfig {
    /// Reads a configuration file over the defaults.
    public static func load(file: String) throws(ConfigError) -> AgentConfig {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigError(file: file, key: "", message: "cannot read the file (does it exist, is it UTF-8 text?)")
        }
        do {
            return try parse(yaml: text)
        } catch var error {
            error.file = file
            throw error
        }
    }

    /// Parses YAML text over the defaults.
    public static func parse(yaml: String) throws(ConfigError) -> AgentConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError(key: "", message: "not valid YAML: \(error)")
        }
        var config = AgentConfig()
        guard let root else { return config }  // an empty file: every default
        var reader = ConfigReader(node: root, path: "")
        try reader.read(into: &config)
        try config.validate()
        return config
    }
}

/// Walks the YAML tree, taking known keys and refusing anything else.
struct ConfigReader {
    let node: Node
    let path: String

    private func key(_ name: String) -> String { path.isEmpty ? name : path + "." + name }

    /// The mapping's entries, each key checked against `known`.
    func entries(known: Set<String>) throws(ConfigError) -> [(String, Node)] {
        guard let mapping = node.mapping else { throw ConfigError(key: path, message: "expected a mapping of keys to values") }
        var result: [(String, Node)] = []
        for (k, v) in mapping {
            guard let name = k.string else { throw ConfigError(key: path, message: "a key that is not text") }
            guard known.contains(name) else {
                throw ConfigError(key: key(name), message: "unknown key (known here: \(known.sorted().joined(separator: ", ")))")
            }
            result.append((name, v))
        }
        return result
    }

    mutating func read(into c: inout AgentConfig) throws(ConfigError) {
        for (name, value) in try entries(known: ["backend", "libvirt_uri", "socket_dir", "data_dir", "listen", "sampler", "io", "ledger", "thin_disks", "thin", "api", "heartbeat"]) {
            let k = key(name)
            switch name {
            case "backend":
                let text = try Self.string(value, k)
                guard let kind = BackendOptions.Kind(rawValue: text) else {
                    throw ConfigError(key: k, message: "'\(text)' is not a backend (qmp or libvirt)")
                }
                c.backend = kind
            case "libvirt_uri": c.libvirtURI = try Self.string(value, k)
            case "socket_dir": c.socketDirectory = try Self.string(value, k)
            case "data_dir": c.dataDirectory = try Self.string(value, k)
            case "listen": c.listen = try Self.string(value, k)
            case "thin_disks": c.thinDisks = try Self.thinDisks(value, k)
            case "heartbeat": try Self.heartbeat(value, k, into: &c.heartbeat)
            case "api":
                for (n, v) in try ConfigReader(node: value, path: k).entries(known: APISettings.keys) {
                    switch n {
                    case "idle_timeout": c.apiIdleTimeout = try Self.number(v, k + "." + n)
                    case "max_connections": c.apiMaxConnections = try Self.integer(v, k + "." + n)
                    default: try c.api.read(n, v, k + "." + n)
                    }
                }
            case "thin":
                for (n, v) in try ConfigReader(node: value, path: k).entries(known: ["polling_interval"]) where n == "polling_interval" {
                    c.thinPollingInterval = try Self.number(v, k + "." + n)
                }
            case "sampler":
                for (n, v) in try ConfigReader(node: value, path: k).entries(known: ["interval", "full_interval", "timeout", "balloon_stats_period"]) {
                    let kk = k + "." + n
                    switch n {
                    case "interval": c.interval = try Self.number(v, kk)
                    case "full_interval": c.fullInterval = try Self.number(v, kk)
                    case "timeout": c.timeout = try Self.number(v, kk)
                    default: c.balloonStatsPeriod = try Self.integer(v, kk)
                    }
                }
            case "io":
                for (n, v) in try ConfigReader(node: value, path: k).entries(known: ["latency_histograms", "histogram_boundaries_us"]) {
                    let kk = k + "." + n
                    if n == "latency_histograms" {
                        c.latencyHistograms = try Self.boolean(v, kk)
                    } else {
                        guard let items = v.sequence else { throw ConfigError(key: kk, message: "expected a list of integers") }
                        c.histogramBoundariesUs = try items.map { (item) throws(ConfigError) in try Self.integer(item, kk) }
                    }
                }
            default:
                for (n, v) in try ConfigReader(node: value, path: k).entries(known: ["period", "flush_interval", "sample_retention"]) {
                    let kk = k + "." + n
                    switch n {
                    case "period": c.period = try Self.integer(v, kk)
                    case "flush_interval": c.flushInterval = try Self.number(v, kk)
                    default: c.sampleRetention = try Self.number(v, kk)
                    }
                }
            }
        }
    }

    static func string(_ node: Node, _ key: String) throws(ConfigError) -> String {
        guard let s = node.scalar, s.style == .plain || s.style == .singleQuoted || s.style == .doubleQuoted, let value = node.string, !value.isEmpty else {
            throw ConfigError(key: key, message: "expected text")
        }
        return value
    }

    // Numbers are read from the scalar's text with Swift's own parsers, not Yams'
    // `Node.int`/`Node.float`: those take YAML 1.1's base-60 forms (`1:30`), and Yams 6.2.2
    // traps on an overflowing one (`18446744073:7:7`, found by `make fuzz`, FuzzConfig).
    static func number(_ node: Node, _ key: String) throws(ConfigError) -> Double {
        guard let s = node.scalar, s.style == .plain, let n = Double(s.string), n.isFinite else {
            throw ConfigError(key: key, message: "expected a number of seconds, got '\(node.scalar?.string ?? "a structure")'")
        }
        return n
    }

    static func integer(_ node: Node, _ key: String) throws(ConfigError) -> Int {
        guard let s = node.scalar, s.style == .plain, let n = Int(s.string) else {
            throw ConfigError(key: key, message: "expected an integer, got '\(node.scalar?.string ?? "a structure")'")
        }
        return n
    }

    static func boolean(_ node: Node, _ key: String) throws(ConfigError) -> Bool {
        guard node.scalar != nil, let b = node.bool else {
            throw ConfigError(key: key, message: "expected true or false, got '\(node.scalar?.string ?? "a structure")'")
        }
        return b
    }
}
