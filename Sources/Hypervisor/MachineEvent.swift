import QMP
import Synchronization

/// Something that happened to a VM's monitor connection, for services that act on events.
/// A connection's events come in order: `connected`, its QMP events, `disconnected`.
public struct MachineEvent: Sendable {
    public enum Kind: Sendable {
        /// vmpulse (re)connected to the VM's monitor: a new VM, or a new QEMU behind the
        /// socket. `name` and `uuid` are the VM's (the socket's name and "" when QEMU
        /// could not be asked in time; then sent again, same connection, once learned).
        case connected(name: String, uuid: String)
        /// An asynchronous QMP event (`BLOCK_WRITE_THRESHOLD`, `BLOCK_IO_ERROR`, `STOP`, ...).
        case qmp(QMPEvent)
        /// The connection ended (QEMU exited, or the monitor broke).
        case disconnected
    }

    public var socketPath: String
    /// Which connection (unique in the process): a late `disconnected` of an earlier
    /// connection to the same socket is told apart from the current one.
    public var connection: Int
    public var kind: Kind
    /// When vmpulse handed it on, moments after reading it off the monitor (`MonotonicTime` seconds).
    public var receivedAt: Double

    public init(socketPath: String, connection: Int, kind: Kind, receivedAt: Double) {
        self.socketPath = socketPath
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
