/// A group of statistics that can be asked for, named as in `virsh domstats`.
///
/// The list holds every group libvirt 9 knows so that a request for one of
/// them is recognised even when a backend does not support it; what a backend
/// supports is its own `supportedGroups`.
public enum StatsGroup: String, Sendable, CaseIterable, Hashable, Comparable {
    case state
    case cpuTotal = "cpu-total"
    case balloon
    case vcpu
    case interface
    case block
    /// vmpulse's own: every I/O counter of the accounting wishlist per disk, and (in the agent) their windows.
    case io
    /// vmpulse's own: thin disks the agent extends (state, mark, extensions, pauses recovered).
    case thin
    /// vmpulse's own: the heartbeat links that watch a VM or act on it (state, suspicion, pulses, actions).
    case heartbeat
    case iothread
    case perf
    case memory
    case dirtyrate
    case vm

    /// The key prefix of the group's parameters (`cpu-total` writes `cpu.*`, `interface` writes `net.*`).
    public var keyPrefix: String {
        switch self {
        case .cpuTotal: return "cpu"
        case .interface: return "net"
        default: return rawValue
        }
    }

    public static func < (lhs: StatsGroup, rhs: StatsGroup) -> Bool {
        lhs.rank < rhs.rank
    }

    private var rank: Int {
        Self.allCases.firstIndex(of: self) ?? Self.allCases.count
    }
}

/// Why a group selection cannot be served.
public struct GroupSelectionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Names that are groups but that the backend does not support.
    public var unsupported: [StatsGroup]
    /// Names that are not stats groups at all.
    public var unknown: [String]
    public var backend: String

    public init(unsupported: [StatsGroup], unknown: [String], backend: String) {
        self.unsupported = unsupported
        self.unknown = unknown
        self.backend = backend
    }

    public var description: String {
        var parts: [String] = []
        if !unsupported.isEmpty {
            let names = unsupported.map(\.rawValue).joined(separator: ", ")
            parts.append("the \(backend) backend does not support the group\(unsupported.count > 1 ? "s" : "") \(names)")
        }
        if !unknown.isEmpty {
            let names = unknown.map { "'\($0)'" }.joined(separator: ", ")
            parts.append("\(names) \(unknown.count > 1 ? "are not stats groups" : "is not a stats group")")
        }
        let known = StatsGroup.allCases.map(\.rawValue).joined(separator: ", ")
        return parts.joined(separator: "; ") + " (groups: \(known))"
    }
}

/// The groups a caller asked for, resolved against what a backend supports,
/// with libvirt's enforce semantics: without `enforce`, unsupported groups are
/// left out; with it, they are an error.
public struct GroupSelection: Sendable, Equatable {
    /// The groups to collect, in canonical order.
    public var groups: [StatsGroup]
    /// Requested groups that were left out (empty with `enforce`, which throws instead).
    public var leftOut: [String]

    /// Resolves a request.
    /// - Parameters:
    ///   - requested: group names as given (`["block", "cpu-total"]`); empty means every supported group.
    ///   - supported: the backend's groups.
    ///   - enforce: fail instead of leaving out an unsupported or unknown group.
    ///   - backend: the backend's name, for the message.
    public static func resolve(
        requested: [String], supported: Set<StatsGroup>, enforce: Bool, backend: String
    ) throws(GroupSelectionError) -> GroupSelection {
        if requested.isEmpty {
            return GroupSelection(groups: supported.sorted(), leftOut: [])
        }
        var chosen: Set<StatsGroup> = []
        var unsupported: [StatsGroup] = []
        var unknown: [String] = []
        for raw in requested {
            let name = raw.trimmingWhitespace()
            guard !name.isEmpty else { continue }
            guard let group = StatsGroup(rawValue: name) else {
                if !unknown.contains(name) { unknown.append(name) }
                continue
            }
            if supported.contains(group) {
                chosen.insert(group)
            } else if !unsupported.contains(group) {
                unsupported.append(group)
            }
        }
        if enforce && !(unsupported.isEmpty && unknown.isEmpty) {
            throw GroupSelectionError(unsupported: unsupported, unknown: unknown, backend: backend)
        }
        return GroupSelection(groups: chosen.sorted(), leftOut: unsupported.map(\.rawValue) + unknown)
    }

    /// Splits a comma-separated list, as `--group block,cpu-total` gives it.
    public static func names(fromList list: [String]) -> [String] {
        list.flatMap { $0.split(separator: ",").map(String.init) }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
