/// One statistics parameter: a dot-separated key and its typed value.
public struct StatsParam: Sendable, Hashable {
    public var key: String
    public var value: TypedValue

    public init(_ key: String, _ value: TypedValue) {
        self.key = key
        self.value = value
    }
}

/// The statistics of one VM: its identity and an ordered list of parameters.
///
/// Order matters to people reading the text form (`block.2` before `block.10`),
/// so parameters are a list, not a dictionary.
public struct StatsRecord: Sendable, Hashable {
    public var name: String
    public var uuid: String
    public var params: [StatsParam]
    /// Problems met while collecting this VM (a group that could not be read,
    /// a reply that did not parse). The record holds everything else.
    public var errors: [String]
    /// Where the figures came from: `agent` (its snapshot) or `direct` (this process asked QEMU).
    public var source: String?
    /// Seconds since the VM last answered, for records served from a snapshot.
    public var statsAge: Double?

    public init(name: String, uuid: String, params: [StatsParam] = [], errors: [String] = [], source: String? = nil, statsAge: Double? = nil) {
        self.name = name
        self.uuid = uuid
        self.params = params
        self.errors = errors
        self.source = source
        self.statsAge = statsAge
    }

    /// The value of a key, if present.
    public subscript(key: String) -> TypedValue? {
        params.first { $0.key == key }?.value
    }

    /// Whether the record has any key of the group (`block` matches `block.count`).
    public func hasKeys(withPrefix prefix: String) -> Bool {
        params.contains { $0.key.hasPrefix(prefix + ".") }
    }
}

/// Appends typed parameters under a key prefix, so group builders read plainly.
public struct ParamWriter: Sendable {
    public private(set) var params: [StatsParam] = []

    public init() {}

    public mutating func int(_ key: String, _ value: Int64) { params.append(StatsParam(key, .int(value))) }
    public mutating func uint(_ key: String, _ value: UInt64) { params.append(StatsParam(key, .uint(value))) }
    public mutating func double(_ key: String, _ value: Double) { params.append(StatsParam(key, .double(value))) }
    public mutating func string(_ key: String, _ value: String) { params.append(StatsParam(key, .string(value))) }
    public mutating func bool(_ key: String, _ value: Bool) { params.append(StatsParam(key, .bool(value))) }

    /// Adds an unsigned value when present; absent values are left out, as libvirt does.
    public mutating func uint(_ key: String, ifPresent value: UInt64?) {
        if let value { uint(key, value) }
    }

    public mutating func append(contentsOf other: [StatsParam]) { params.append(contentsOf: other) }
}
