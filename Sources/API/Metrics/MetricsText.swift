/// Prometheus' text exposition format (0.0.4) and OpenMetrics 1.0, written by hand.
///
/// Why not swift-prometheus: its `Counter` only counts up by increments it is given, while
/// vmpulse's counters are QEMU's and libvirt's absolute values. Mirroring them would mean
/// keeping the last value of every series, feeding the registry deltas, guessing what a
/// drop means (a new QEMU process), and unregistering the series of VMs that went away,
/// or they would be exported for ever. Rendering each scrape from the latest snapshots has
/// none of that state: a counter is what QEMU says now (a new QEMU starts from zero, which
/// Prometheus' `rate()` reads as a counter reset), and a VM that is gone is simply not in
/// the next scrape, so Prometheus marks its series stale.
public struct MetricsText: Sendable {
    public enum Format: Sendable {
        case prometheus
        case openMetrics

        public var contentType: String {
            switch self {
            case .prometheus: "text/plain; version=0.0.4; charset=utf-8"
            case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }

        /// OpenMetrics when the scrape's `Accept` asks for it, as Prometheus does when it may.
        public static func negotiate(accept: String?) -> Format {
            guard let accept, accept.contains("application/openmetrics-text") else { return .prometheus }
            return .openMetrics
        }
    }

    public enum Kind: String, Sendable {
        case counter, gauge, info
    }

    /// One metric family: every sample of a name, written together under its HELP and TYPE.
    struct Family: Sendable {
        var name: String
        var kind: Kind
        var help: String
        var unit: String?
        /// The sample lines, written as they are added: a list of (labels, value) strings
        /// retained and released each of 21 000 samples in a 500-VM scrape (perf, `make bench-metrics`).
        var lines: [UInt8] = []
    }

    private var families: [Family] = []
    private var index: [String: Int] = [:]

    public init() {}

    /// A set of labels, escaped and written once (`{a="x",b="y"}`) however many samples
    /// carry it: a 500-VM scrape wrote the same VM's labels 40 times over (perf, `make bench-metrics`).
    public struct Labels: Sendable {
        private(set) var inner = ""
        /// `{inner}`, or nothing: kept written, since every sample of the set takes it.
        private(set) var text = ""

        public init(_ pairs: [(String, String)] = []) {
            for (name, value) in pairs { append(name, value) }
        }

        public func adding(_ name: String, _ value: String) -> Labels {
            var l = self
            l.append(name, value)
            return l
        }

        private mutating func append(_ name: String, _ value: String) {
            if !inner.isEmpty { inner += "," }
            inner += name
            inner += "=\""
            inner += MetricsText.escape(value)
            inner += "\""
            text = "{" + inner + "}"
        }
    }

    /// Adds one sample. `name` is the full Prometheus name (a counter's with `_total`);
    /// a family is declared by its first sample, later ones must say the same kind.
    public mutating func add(_ name: String, _ kind: Kind, _ help: String, unit: String? = nil,
                             labels: [(String, String)] = [], value: Double) {
        add(name, kind, help, unit: unit, labels: Labels(labels), value: value)
    }

    public mutating func add(_ name: String, _ kind: Kind, _ help: String, unit: String? = nil, labels: Labels, value: Double) {
        add(name, kind, help, unit: unit, labels: labels, extra: "", value: value)
    }

    /// Adds one sample whose labels are `labels` and then `extra`, a fragment already
    /// escaped (`,window="1m",operation="read"`): the constant labels of a VM's windows,
    /// written once for every disk instead of once per sample.
    public mutating func add(_ name: String, _ kind: Kind, _ help: String, unit: String? = nil, labels: Labels, extra: String, value: Double) {
        let i: Int
        if let known = index[name] {
            i = known
        } else {
            i = families.count
            index[name] = i
            families.append(Family(name: name, kind: kind, help: help, unit: unit))
        }
        families[i].lines.append(contentsOf: name.utf8)
        if extra.isEmpty {
            families[i].lines.append(contentsOf: labels.text.utf8)
        } else {
            families[i].lines.append(UInt8(ascii: "{"))
            families[i].lines.append(contentsOf: labels.inner.utf8)
            families[i].lines.append(contentsOf: (labels.inner.isEmpty ? extra.dropFirst() : Substring(extra)).utf8)
            families[i].lines.append(UInt8(ascii: "}"))
        }
        families[i].lines.append(UInt8(ascii: " "))
        families[i].lines.append(contentsOf: Self.number(value).utf8)
        families[i].lines.append(UInt8(ascii: "\n"))
    }

    public var isEmpty: Bool { families.isEmpty }

    /// Adds every sample of `other` after this one's, family by family.
    public mutating func append(_ other: MetricsText) {
        for f in other.families {
            if let i = index[f.name] {
                families[i].lines.append(contentsOf: f.lines)
            } else {
                index[f.name] = families.count
                families.append(f)
            }
        }
    }

    /// The whole exposition, ending with `# EOF` in OpenMetrics.
    public func render(_ format: Format) -> String {
        String(decoding: bytes(format), as: UTF8.self)
    }

    /// The whole exposition as UTF-8, as it is sent.
    public func bytes(_ format: Format) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(families.reduce(16) { $0 + 160 + $1.help.utf8.count + $1.lines.count })
        for f in families {
            // OpenMetrics names a counter family without `_total` (its samples keep it), and
            // has an `info` type whose samples end in `_info`.
            var family = f.name
            var kind = f.kind.rawValue
            if format == .openMetrics, f.kind == .counter, family.hasSuffix("_total") { family.removeLast(6) }
            if format == .prometheus, f.kind == .info { kind = "gauge" }
            if format == .openMetrics, f.kind == .info, family.hasSuffix("_info") { family.removeLast(5) }
            out.append(contentsOf: "# HELP \(family) \(Self.help(f.help))\n# TYPE \(family) \(kind)\n".utf8)
            if format == .openMetrics, let unit = f.unit { out.append(contentsOf: "# UNIT \(family) \(unit)\n".utf8) }
            out.append(contentsOf: f.lines)
        }
        if format == .openMetrics { out.append(contentsOf: "# EOF\n".utf8) }
        return out
    }

    /// A label value escaped as both formats say: backslash, double quote and line feed.
    static func escape(_ value: String) -> String {
        // By scalars: "\r\n" is one Character, whose line feed must be escaped too.
        guard value.unicodeScalars.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        var s = String.UnicodeScalarView()
        for c in value.unicodeScalars {
            switch c {
            case "\\": s.append(contentsOf: "\\\\".unicodeScalars)
            case "\"": s.append(contentsOf: "\\\"".unicodeScalars)
            case "\n": s.append(contentsOf: "\\n".unicodeScalars)
            default: s.append(c)
            }
        }
        return String(s)
    }

    /// HELP text: backslash and line feed escaped.
    static func help(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Integers as integers (exact up to 2^53, as every Prometheus client writes them),
    /// the rest in Swift's shortest round-trip form; NaN and infinities in the formats' words.
    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v == .infinity { return "+Inf" }
        if v == -.infinity { return "-Inf" }
        if v == v.rounded(), abs(v) < 9.007_199_254_740_992e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
