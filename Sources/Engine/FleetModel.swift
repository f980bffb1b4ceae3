import VMPulseCore

/// Whether the engine hears from a host: `up` when its last poll was answered in time,
/// `stale` when it has not answered for `stale_after` polls (its data is the last it gave).
public enum HostState: String, Sendable, Equatable {
    case up, stale, unknown
}

/// One host as the engine last saw it.
public struct HostReport: Sendable, Equatable {
    public var name: String
    public var address: String
    public var state: HostState
    /// Unix seconds of its last answer, and of the last attempt.
    public var lastAnswer: Double?
    public var lastAttempt: Double?
    public var problem: String?
    public var vmCount: Int
    /// Seconds without an answer after which a reader should take it as stale (also when
    /// the engine itself has stopped writing).
    public var staleAfter: Double

    public init(name: String, address: String, state: HostState, lastAnswer: Double?, lastAttempt: Double?, problem: String?, vmCount: Int,
                staleAfter: Double) {
        self.name = name
        self.address = address
        self.state = state
        self.lastAnswer = lastAnswer
        self.lastAttempt = lastAttempt
        self.problem = problem
        self.vmCount = vmCount
        self.staleAfter = staleAfter
    }
}

/// One VM as one host reports it: the runtime view, and the detail answers the hashes asked for.
public struct VMReport: Sendable, Equatable {
    public var uuid: String
    public var name: String?
    public var status: String
    public var cpuUser: Double?
    public var cpuSys: Double?
    public var memUsage: Double?
    public var elapsed: Int64?
    public var statsAge: Double?
    public var hashes: [String: String]
    public var conf: JSONValue?
    public var statusInfo: JSONValue?
    public var guest: JSONValue?
    public var devices: JSONValue?
    /// Unix seconds of the answer it came in.
    public var seen: Double

    public init(uuid: String, status: String, hashes: [String: String], seen: Double) {
        self.uuid = uuid
        self.status = status
        self.hashes = hashes
        self.seen = seen
    }
}

/// The fleet's view of one VM: its best claim (a running one on a host that answers,
/// else the newest), so that a VM that migrated is one VM with its current host.
public struct FleetVM: Sendable, Equatable {
    public var host: String
    public var report: VMReport
    /// Other hosts that report it too (a migration in flight, or two VMs with one UUID).
    public var alsoOn: [String]
}

/// A VM's status that changed, seen by a poll or pushed by an event.
public struct StatusChange: Sendable, Equatable {
    public var host: String
    public var uuid: String
    public var at: Double
    public var from: String?
    public var to: String
    public var source: String

    public init(host: String, uuid: String, at: Double, from: String?, to: String, source: String) {
        self.host = host
        self.uuid = uuid
        self.at = at
        self.from = from
        self.to = to
        self.source = source
    }
}

/// One page of an agent's ledger (`Host.getBillingRecords`), checked.
public struct BillingPage: Sendable, Equatable {
    public var ledger: String
    public var rows: [BillingRow]
    public var gaps: [BillingGap]
    public var next: Int64
    public var nextGap: Int64
    public var more: Bool
}

public struct BillingRow: Sendable, Equatable {
    public var revision: Int64
    public var usage: PeriodUsage
}

public struct BillingGap: Sendable, Equatable {
    public var id: Int64
    public var gap: UsageGap
}

/// How far a host's ledger has been copied.
public struct BillingCursor: Sendable, Equatable {
    public var ledger: String
    public var revision: Int64
    public var gap: Int64
}

/// A period's usage on one host (summed over the ledgers that host had).
public struct FleetUsage: Sendable, Equatable {
    public var host: String
    public var usage: PeriodUsage
}
