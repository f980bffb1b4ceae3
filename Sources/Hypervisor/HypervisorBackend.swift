import VMPulseCore

/// The one seam between vmpulse and the hypervisor: everything above this module (the
/// agent, the API, the CLI, the thin-disk loop) reaches VMs through this protocol only,
/// and never knows whether QEMU is reached through a monitor socket of vmpulse's own
/// (`QMPBackend`) or through libvirt (`LibvirtBackend`). `Backends.make` picks one.
///
/// A VM is named by its *machine*: a handle unique in the backend for the VM's life on
/// this host (the monitor socket's path for QMP, `libvirt:UUID` for libvirt).
/// A backend never lets one VM delay the others beyond its per-VM timeout.
public protocol HypervisorBackend: AnyObject, Sendable {
    /// A short name for messages (`qmp`, `libvirt`).
    var name: String { get }
    /// The groups this backend can collect.
    var supportedGroups: Set<StatsGroup> { get }
    /// Every VM's connection events and typed events, in arrival order. One consumer.
    var events: AsyncStream<MachineEvent> { get }

    /// Statistics of every VM (or of those whose name or UUID is in `vms`), for the groups given.
    /// VMs that do not answer in time come back marked `state.monitor-response=-1`;
    /// only a problem with the host itself (no socket directory, no libvirtd) throws.
    func collect(groups: [StatsGroup], vms: [String]?) async throws(BackendError) -> [StatsRecord]

    /// Looks for VMs that appeared or went away.
    @discardableResult
    func refresh() async throws(BackendError) -> Discovery

    /// The machines currently known, sorted.
    var machines: [String] { get async }

    /// One VM's I/O reading within the timeout (a VM that does not answer comes back with
    /// `error` set); nil when the VM is gone.
    /// - Parameter histogramBoundaries: switch the latency histograms on (once per VM run)
    ///   with these boundaries, in ns; nil leaves them alone.
    func readIO(machine: String, histogramBoundaries: [UInt64]?) async -> VMIOReading?

    /// One VM's statistics for the groups given; nil when the VM is gone.
    func collect(machine: String, groups: [StatsGroup]) async -> StatsRecord?

    /// What the thin-disk loop needs of one disk (the drive named `drive`, or the disk having
    /// a node named `node`); nil when the VM has no such disk.
    func readThinDisk(machine: String, drive: String?, node: String?) async throws(MachineError) -> ThinDiskReading?

    /// Sets the write threshold (bytes; 0 clears it) on `node`, as `readThinDisk` named it.
    func setWriteThreshold(machine: String, node: String, bytes: UInt64) async throws(MachineError)

    /// Whether the VM runs, and why not.
    func runState(machine: String) async throws(MachineError) -> RunState

    /// Does `action` to the VM (an operator's request, a configured action, the thin-disk
    /// loop's resume after ENOSPC). Returns once the hypervisor has accepted it.
    func perform(_ action: VMAction, machine: String) async throws(MachineError)

    /// What the VM is made of (devices, display, acceleration), for the engine's
    /// configuration view and its hash. Asked on the agent's full pass, never on a request.
    func describe(machine: String) async throws(MachineError) -> MachineDescription

    /// What the guest reports through its guest agent; nil when it has none, or it does
    /// not answer within the backend's timeout. Asked off every pass (the sampler runs it
    /// in a task of its own), so a silent agent never delays the VM's sampling.
    func guestInfo(machine: String) async -> GuestInfo?

    /// One round trip to the guest agent (`guest-ping`), for a heartbeat link to the guest:
    /// returns once it answered, throws when it did not within the backend's timeout.
    func pingGuest(machine: String) async throws(MachineError)

    /// Lets go of every connection.
    func close() async
}

extension HypervisorBackend {
    /// Lets a paused VM run again.
    public func resume(machine: String) async throws(MachineError) {
        try await perform(.resume, machine: machine)
    }
}

/// What can be done to a VM, on either backend: the operations a heartbeat action, an
/// operator or the thin-disk loop may ask for.
public enum VMAction: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Stops the vCPUs (QMP `stop`, `virDomainSuspend`).
    case pause
    /// Lets the vCPUs run again (`cont`, `virDomainResume`).
    case resume
    /// A hard reset, as the reset button (`system_reset`, `virDomainReset`).
    case reset
    /// Asks the guest to power off, as the ACPI power button (`system_powerdown`,
    /// `virDomainShutdownFlags(ACPI_POWER_BTN)`); a guest that ignores it runs on.
    case powerdown
    /// Ends the QEMU process at once (`quit`, `virDomainDestroy`).
    case kill

    public var description: String { rawValue }
}

/// What a look for VMs changed.
public struct Discovery: Sendable, Equatable {
    public var added: [String]
    public var removed: [String]

    public init(added: [String], removed: [String]) {
        self.added = added
        self.removed = removed
    }
}

/// A problem with the host as a whole, not with one VM.
public struct BackendError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A problem with one VM's operation.
public struct MachineError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The VM is not there (any more).
        case gone
        /// It did not answer in time.
        case timeout
        /// The hypervisor refused the operation (a wrong node, a feature it lacks): trying
        /// again on the same VM run will not help.
        case refused
        /// Anything else: a broken connection, a reply of the wrong shape.
        case failed
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Whether a VM runs (QEMU's run states, which libvirt's map onto).
public enum RunState: Sendable, Equatable, CustomStringConvertible {
    case running
    /// Paused on an I/O error (`werror=stop` or `enospc`).
    case ioError
    /// Paused for another reason (an operator, a migration, started paused).
    case paused
    case other(String)

    public var description: String {
        switch self {
        case .running: "running"
        case .ioError: "io-error"
        case .paused: "paused"
        case .other(let s): s
        }
    }
}

/// Keys vmpulse adds to libvirt's `state` group.
public enum MonitorResponse {
    public static let key = "state.monitor-response"
    /// The monitor answered every query in time.
    public static let responsive: Int64 = 0
    /// The monitor did not answer within the timeout, or could not be reached.
    public static let unresponsive: Int64 = -1
}
