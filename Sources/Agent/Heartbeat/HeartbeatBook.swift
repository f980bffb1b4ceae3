import Store
import Synchronization
import VMPulseCore

/// What one link looks like now, for `vmpulse heartbeat status`, the `heartbeat` group and
/// `/metrics`.
public struct LinkStatus: Sendable, Equatable {
    public var name: String
    /// `peer`, `guest` or `service`.
    public var kind: String
    /// The peer's name, the VM, or the service's address.
    public var target: String
    public var detector: String
    public var state: LinkState = .alive
    /// The detector's suspicion (phi, or seconds without a pulse) at the last check.
    public var suspicion: Double = 0
    /// Monotonic seconds of the last accepted pulse; nil before the first.
    public var lastPulse: Double?
    public var since: Double
    public var pulses: UInt64 = 0
    /// Frames refused: bad shape or signature (`forged`), replays, wrong sender.
    public var rejected: UInt64 = 0
    public var forged: UInt64 = 0
    public var replayed: UInt64 = 0
    /// Probes that failed (guest and service links).
    public var failedProbes: UInt64 = 0
    public var connections = 0
    public var actionsRun: UInt64 = 0
    public var actionsFailed: UInt64 = 0
    /// State changes whose actions were dropped: the actions' backlog was full.
    public var droppedTransitions: UInt64 = 0
    /// The VMs the link's actions name (and a guest link's VM): its `heartbeat` group goes to them.
    public var vms: [String] = []
    /// The latest problem (a refused frame, a failed probe), for the status.
    public var lastProblem: String?
    public var recentActions: [ActionLog.Entry] = []
    /// Notices received over this link from the peer (newest last).
    public var notices: [Notice] = []

    public struct Notice: Sendable, Equatable {
        public var time: Double
        public var from: String
        public var link: String
        public var state: LinkState
    }

    public init(name: String, kind: String, target: String, detector: String, since: Double, vms: [String] = []) {
        self.name = name
        self.kind = kind
        self.target = target
        self.detector = detector
        self.since = since
        self.vms = vms
    }

    public static let keptActions = 10
    public static let keptNotices = 10
}

/// Every link's status; the heartbeat's tasks write it, readers copy it (never waiting on a
/// peer, a guest or an action).
public final class HeartbeatBook: Sendable {
    private let links: Mutex<[LinkStatus]>

    public init(_ links: [LinkStatus] = []) { self.links = Mutex(links) }

    public func all() -> [LinkStatus] { links.withLock { $0 } }

    func update(_ index: Int, _ change: (inout LinkStatus) -> Void) {
        links.withLock { all in
            guard all.indices.contains(index) else { return }
            change(&all[index])
        }
    }

    /// The `heartbeat` group of a VM: the links that watch it or act on it.
    /// `heartbeat.count`, then per link `heartbeat.N.name`, `.kind`, `.state`, `.suspicion`,
    /// `.last_pulse_age` (seconds; absent before the first), `.pulses`, `.rejected`, `.actions`, `.actions_failed`.
    public func params(vmName: String, vmUUID: String, now: Double) -> [StatsParam] {
        let mine = all().filter { link in link.vms.contains { $0 == vmName || (!vmUUID.isEmpty && $0 == vmUUID) } }
        guard !mine.isEmpty else { return [] }
        var params = [StatsParam("heartbeat.count", .uint(UInt64(mine.count)))]
        for (i, link) in mine.enumerated() {
            let p = "heartbeat.\(i)."
            params.append(StatsParam(p + "name", .string(link.name)))
            params.append(StatsParam(p + "kind", .string(link.kind)))
            params.append(StatsParam(p + "state", .string(link.state.rawValue)))
            params.append(StatsParam(p + "suspicion", .double(link.suspicion)))
            if let last = link.lastPulse { params.append(StatsParam(p + "last_pulse_age", .double(max(0, now - last)))) }
            params.append(StatsParam(p + "pulses", .uint(link.pulses)))
            params.append(StatsParam(p + "rejected", .uint(link.rejected)))
            params.append(StatsParam(p + "actions", .uint(link.actionsRun)))
            params.append(StatsParam(p + "actions_failed", .uint(link.actionsFailed)))
        }
        return params
    }
}
