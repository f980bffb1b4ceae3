/// Everything that can go wrong talking to a QEMU monitor, each with what a person needs to act.
///
/// A closed set: every malformed, truncated or oversized message, an error
/// reply, a timeout and a connection lost mid-command map to one of these;
/// the client never crashes and never leaves a caller waiting on bad input.
public enum QMPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The socket could not be opened (no listener, permission, not a socket).
    case connectFailed(path: String, reason: String)
    /// Nothing listens on the socket: the QEMU that made it has exited, or the path is gone.
    case noListener(path: String)
    /// The peer's first message was not a QMP greeting.
    case notQMP(detail: String)
    /// No reply within the deadline. The connection stays open; a late reply is dropped.
    case timedOut(command: String, after: Duration)
    /// QEMU answered the command with an error reply.
    case commandFailed(command: String, errorClass: String, description: String)
    /// A message that is not JSON, or JSON that is not a QMP message. The connection is closed.
    case malformedMessage(reason: String, excerpt: String)
    /// A line longer than the client's limit. The connection is closed; memory stays bounded.
    case messageTooLarge(limit: Int)
    /// Valid QMP, but not what the protocol allows here (a reply to a command never sent).
    case unexpectedMessage(String)
    /// The connection ended; pending commands fail with this.
    case connectionClosed(detail: String)
    /// A reply whose shape is not what the command's schema says.
    case unexpectedReply(command: String, detail: String)
    /// The caller's task was cancelled while waiting.
    case cancelled

    public var description: String {
        switch self {
        case .connectFailed(let path, let reason):
            return "cannot connect to the QMP socket \(path): \(reason) (is QEMU running with -qmp unix:\(path),server=on,wait=off, and is no other client attached to this monitor?)"
        case .noListener(let path):
            return "nothing listens on \(path) (the QEMU that created it has exited)"
        case .notQMP(let detail):
            return "the peer did not greet as a QEMU monitor: \(detail)"
        case .timedOut(let command, let after):
            return "QEMU did not answer '\(command)' within \(after) (the VM may be stopped or busy)"
        case .commandFailed(let command, let errorClass, let description):
            return "QEMU refused '\(command)': \(errorClass): \(description)"
        case .malformedMessage(let reason, let excerpt):
            return "malformed QMP message (\(reason)): \(excerpt)"
        case .messageTooLarge(let limit):
            return "QMP message longer than \(limit) bytes; connection closed (raise the limit if this QEMU really sends such replies)"
        case .unexpectedMessage(let detail):
            return "unexpected QMP message: \(detail)"
        case .connectionClosed(let detail):
            return "QMP connection closed: \(detail)"
        case .unexpectedReply(let command, let detail):
            return "reply to '\(command)' does not match QEMU's schema: \(detail)"
        case .cancelled:
            return "QMP command cancelled"
        }
    }

    /// Whether the peer did not answer in time (or the wait was cancelled).
    public var isTimeout: Bool {
        switch self {
        case .timedOut, .cancelled: return true
        default: return false
        }
    }

    /// Whether the connection is unusable after this error.
    public var isFatalForConnection: Bool {
        switch self {
        case .timedOut, .commandFailed, .unexpectedReply, .cancelled: return false
        default: return true
        }
    }
}
