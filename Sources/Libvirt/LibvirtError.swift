internal import CLibvirt

/// A failed libvirt call: libvirt's own error (`virGetLastError`) with what we were doing.
public struct LibvirtError: Error, Sendable, CustomStringConvertible {
    /// `virErrorNumber`; -1 when the error is ours (connection closed, bad input) and not libvirt's.
    public var code: Int32
    /// `virErrorDomain` (which part of libvirt raised it).
    public var domain: Int32
    /// What failed and why, for a person: "cannot connect to libvirt at 'qemu:///nope': ...".
    public var message: String

    public init(code: Int32, domain: Int32, message: String) {
        self.code = code
        self.domain = domain
        self.message = message
    }

    /// The domain is gone or was never there (`VIR_ERR_NO_DOMAIN`), or stopped under the call
    /// ("domain is not running" is `VIR_ERR_OPERATION_INVALID`; see `isNotRunning`).
    public var isNoDomain: Bool { code == LibvirtConstants.errorNoDomain }

    /// The call needs a running domain and it is not (`VIR_ERR_OPERATION_INVALID`).
    public var isNotRunning: Bool { code == LibvirtConstants.errorOperationInvalid }

    /// libvirtd went away, or this connection is closed: reconnect.
    public var isConnectionLost: Bool {
        switch code {
        case LibvirtConstants.errorSystem, LibvirtConstants.errorRPC,
             LibvirtConstants.errorNoConnect, LibvirtConstants.errorInvalidConnection:
            return true
        case LibvirtConstants.errorInternal:
            // "client socket is closed", raised by the RPC client once the socket is gone.
            return domain == LibvirtConstants.fromRPC
        default:
            return false
        }
    }

    /// This connection was closed by `close()` (not by libvirtd): the caller itself closed it.
    public var isClosed: Bool { code == Self.closedCode }

    /// The domain is busy or unresponsive (a job holds its lock, its agent or monitor does not answer).
    public var isTimeout: Bool {
        switch code {
        case LibvirtConstants.errorOperationTimeout, LibvirtConstants.errorAgentUnresponsive:
            return true
        case LibvirtConstants.errorOperationFailed:
            return message.contains("cannot acquire state change lock")
        default:
            return false
        }
    }

    public var description: String {
        code >= 0 ? "\(message) (libvirt error \(code), domain \(domain))" : message
    }

    /// The code of "this connection is closed" (ours, not libvirt's).
    static let closedCode: Int32 = -2

    /// The error of a call made after `close()`.
    static func closed(_ uri: String, _ operation: String) -> LibvirtError {
        LibvirtError(code: closedCode, domain: 0, message: "\(operation): the libvirt connection to '\(uri)' is closed")
    }

    /// The calling thread's last libvirt error (libvirt keeps it per thread), then resets it.
    static func last(_ operation: String) -> LibvirtError {
        guard let error = virGetLastError() else {
            return LibvirtError(code: -1, domain: 0, message: "\(operation) failed and libvirt gave no reason")
        }
        let reason = error.pointee.message.map { String(cString: $0) } ?? "no message"
        let result = LibvirtError(code: error.pointee.code, domain: error.pointee.domain, message: "\(operation): \(reason)")
        virResetLastError()
        return result
    }
}
