import Synchronization

/// Something that happened to a VM, for services that act on events.
/// A connection's events come in order: `connected`, its events, `disconnected`.
public struct MachineEvent: Sendable {
    public enum Kind: Sendable, Equatable {
        /// vmpulse (re)connected to the VM: a new VM, or a new QEMU behind the same machine.
        /// Until `identityKnown`, `name` and `uuid` are placeholders (the socket's name and
        /// ""); the event is sent again, same connection, once they are learned.
        case connected(name: String, uuid: String, identityKnown: Bool)
        /// Writes went past the write threshold set on `node` (QEMU then clears it).
        case writeThreshold(node: String?)
        /// A disk failed a request. `node` and `device` name it as `ThinDiskReading` does;
        /// `noSpace`: the device is full (ENOSPC); `paused`: the VM was paused for it.
        case ioError(node: String?, device: String, noSpace: Bool, paused: Bool)
        /// The VM runs again.
        case resumed
        /// The VM stopped running (paused, for whatever reason).
        case paused
        /// The connection ended (QEMU exited, the monitor broke, libvirt lost the domain).
        case disconnected
    }

    /// The VM's handle in its backend (see `HypervisorBackend`).
    public var machine: String
    /// Which connection (unique in the process): a late `disconnected` of an earlier
    /// connection to the same machine is told apart from the current one.
    public var connection: Int
    public var kind: Kind
    /// When vmpulse handed it on, moments after reading it (`MonotonicTime` seconds).
    public var receivedAt: Double

    public init(machine: String, connection: Int, kind: Kind, receivedAt: Double) {
        self.machine = machine
        self.connection = connection
        self.kind = kind
        self.receivedAt = receivedAt
    }

    private static let connections = Atomic<Int>(0)

    /// A number for a new connection.
    static func newConnection() -> Int {
        connections.wrappingAdd(1, ordering: .relaxed).newValue
    }
}
