import VMPulseCore

/// A source of VM statistics on this host.
///
/// The QMP backend talks to each QEMU's monitor socket; a libvirt backend can
/// sit beside it (libvirt's bulk stats call maps onto `collect` one to one).
/// A backend never lets one VM delay the others beyond its per-VM timeout.
public protocol HypervisorBackend: Sendable {
    /// A short name for messages (`qmp`, `libvirt`).
    var name: String { get }
    /// The groups this backend can collect.
    var supportedGroups: Set<StatsGroup> { get }
    /// Statistics of every VM (or of those whose name or UUID is in `vms`), for the groups given.
    /// VMs that do not answer in time come back marked `state.monitor-response=-1`;
    /// only a problem with the host itself (no socket directory) throws.
    func collect(groups: [StatsGroup], vms: [String]?) async throws(BackendError) -> [StatsRecord]
}

/// A problem with the host as a whole, not with one VM.
public struct BackendError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Keys vmpulse adds to libvirt's `state` group.
public enum MonitorResponse {
    public static let key = "state.monitor-response"
    /// The monitor answered every query in time.
    public static let responsive: Int64 = 0
    /// The monitor did not answer within the timeout, or could not be reached.
    public static let unresponsive: Int64 = -1
}
