import Foundation
import Libvirt
import Synchronization

/// Runs libvirt's blocking calls on threads of their own, off Swift's cooperative pool.
///
/// One thread per call, not a fixed pool: a call to a domain whose QEMU stopped answering
/// blocks in libvirt until QEMU moves again (libvirt puts no timeout on a monitor command),
/// and a fixed pool would fill with such calls and stall every other domain. The caller
/// gives up at its deadline and the thread finishes on its own. Calls in flight are
/// bounded (`limit`): beyond it a call fails at once instead of starting a thread.
final class LibvirtCalls: Sendable {
    private let inFlight = Mutex(0)
    let limit: Int

    init(limit: Int = 64) { self.limit = limit }

    /// Calls in flight now (those stuck in a stopped QEMU included).
    var running: Int { inFlight.withLock { $0 } }

    /// `body` on a thread of its own; its result, or a timeout error after `timeout`.
    func run<T: Sendable>(_ what: String, timeout: Duration,
                          _ body: @escaping @Sendable () throws(LibvirtError) -> T) async -> Result<T, LibvirtCallError> {
        let admitted = inFlight.withLock { n in
            guard n < limit else { return false }
            n += 1
            return true
        }
        guard admitted else {
            return .failure(.busy("\(limit) libvirt calls are still waiting on libvirtd or on stuck domains; '\(what)' not sent"))
        }
        return await withDeadline(timeout) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, LibvirtCallError>, Never>) in
                let thread = Thread { [self] in
                    let result: Result<T, LibvirtCallError>
                    do throws(LibvirtError) {
                        result = .success(try body())
                    } catch {
                        result = .failure(.libvirt(error))
                    }
                    inFlight.withLock { $0 -= 1 }
                    continuation.resume(returning: result)
                }
                thread.name = "libvirt-call"
                thread.start()
            }
        } fallback: {
            .failure(.timedOut("libvirt did not answer '\(what)' within \(timeout) (a domain may be stuck, or libvirtd busy)"))
        }
    }
}

/// Why a libvirt call gave no answer.
enum LibvirtCallError: Error, Sendable, CustomStringConvertible {
    case libvirt(LibvirtError)
    case timedOut(String)
    case busy(String)

    var description: String {
        switch self {
        case .libvirt(let e): "\(e)"
        case .timedOut(let m), .busy(let m): m
        }
    }

    var machineError: MachineError {
        switch self {
        case .timedOut(let m): return MachineError(.timeout, m)
        case .busy(let m): return MachineError(.failed, m)
        case .libvirt(let e):
            if e.isNoDomain || e.isNotRunning { return MachineError(.gone, e.description) }
            if e.isTimeout { return MachineError(.timeout, e.description) }
            if e.code == LibvirtConstants.errorInvalidArgument { return MachineError(.refused, e.description) }
            return MachineError(.failed, e.description)
        }
    }

    var isConnectionLost: Bool {
        if case .libvirt(let e) = self { return e.isConnectionLost || e.isClosed }
        return false
    }
}
