import QMP

/// Something that happened to a VM's monitor connection, for services that act on events.
public struct MachineEvent: Sendable {
    public enum Kind: Sendable {
        /// vmpulse (re)connected to the VM's monitor: a new VM, or a new QEMU behind the socket.
        case connected
        /// An asynchronous QMP event (`BLOCK_WRITE_THRESHOLD`, `BLOCK_IO_ERROR`, `STOP`, ...).
        case qmp(QMPEvent)
        /// The connection ended (QEMU exited, or the monitor broke).
        case disconnected
    }

    public var socketPath: String
    public var kind: Kind
}
