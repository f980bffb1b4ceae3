/// A VM's state as libvirt numbers it (`virDomainState` and its reasons), so
/// that `state.state` and `state.reason` mean what they mean to libvirt users.
public struct DomainState: Sendable, Equatable {
    public var state: Int64
    public var reason: Int64

    // virDomainState
    public static let running: Int64 = 1
    public static let paused: Int64 = 3
    public static let crashed: Int64 = 6
    public static let pmSuspended: Int64 = 7

    // virDomainPausedReason
    public static let pausedUnknown: Int64 = 0
    public static let pausedUser: Int64 = 1
    public static let pausedMigration: Int64 = 2
    public static let pausedSave: Int64 = 3
    public static let pausedIOError: Int64 = 5
    public static let pausedWatchdog: Int64 = 6
    public static let pausedShuttingDown: Int64 = 8
    public static let pausedCrashed: Int64 = 10
    public static let pausedPostcopy: Int64 = 12

    public init(state: Int64, reason: Int64) {
        self.state = state
        self.reason = reason
    }

    /// Maps QEMU's `query-status` status (RunState) the way libvirt's QEMU driver does.
    /// QEMU does not remember why a running VM runs, so a running VM's reason is 0 (unknown);
    /// a status this table does not know maps to paused/unknown rather than failing.
    public init(qemuStatus status: String) {
        switch status {
        case "running", "colo":
            self.init(state: Self.running, reason: 0)
        case "guest-panicked":
            self.init(state: Self.crashed, reason: 1)
        case "suspended":
            self.init(state: Self.pmSuspended, reason: 0)
        case "paused", "prelaunch":
            self.init(state: Self.paused, reason: Self.pausedUser)
        case "inmigrate", "postmigrate", "finish-migrate":
            self.init(state: Self.paused, reason: Self.pausedMigration)
        case "postmigrate-postcopy", "postcopy-paused":
            self.init(state: Self.paused, reason: Self.pausedPostcopy)
        case "io-error":
            self.init(state: Self.paused, reason: Self.pausedIOError)
        case "save-vm":
            self.init(state: Self.paused, reason: Self.pausedSave)
        case "shutdown":
            self.init(state: Self.paused, reason: Self.pausedShuttingDown)
        case "watchdog":
            self.init(state: Self.paused, reason: Self.pausedWatchdog)
        default:
            self.init(state: Self.paused, reason: Self.pausedUnknown)
        }
    }
}
