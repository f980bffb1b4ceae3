import Logging
import Synchronization
import VMPulseCore

/// The ledger keys of the host's live VMs (`LedgerKeys`), shared by their samplers, with
/// each identity conflict logged once when it appears and once when it ends.
public final class IdentityRegistry: Sendable {
    private struct State {
        var keys = LedgerKeys()
        var reported: [String: [String]] = [:]  // claim -> sockets, as last logged
    }

    private let state = Mutex(State())
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Records what the VM behind `socket` claims and returns the key to bill it under
    /// (nil while its identity is not known), and the conflict it is part of. A reading
    /// without an identity (a monitor that did not answer in time, a reconnection not yet
    /// asked) keeps the socket's last claim in the table, so that a clone cannot take the
    /// key of a VM that merely stalled; nothing is billed for such a reading.
    func update(socket: String, claim: String?) -> (key: String?, conflict: LedgerKeys.Conflict?) {
        state.withLock { s in
            // Conflicts start and end only when a claim changes: the report is not redone on every pass.
            if let claim, s.keys.update(socket: socket, claim: claim) { report(&s) }
            return (claim == nil ? nil : s.keys.key(for: socket), s.keys.conflict(for: socket))
        }
    }

    func remove(socket: String) {
        state.withLock { s in
            if s.keys.remove(socket: socket) { report(&s) }
        }
    }

    /// Every identity two or more live VMs claim.
    public var conflicts: [LedgerKeys.Conflict] { state.withLock { $0.keys.conflicts } }

    private func report(_ s: inout State) {
        let now = s.keys.conflicts
        for c in now where s.reported[c.claim] != c.sockets {
            logger.error("\(c)")
            s.reported[c.claim] = c.sockets
        }
        for claim in s.reported.keys where !now.contains(where: { $0.claim == claim }) {
            logger.notice("the identity conflict over \(claim) ended: one VM has it now")
            s.reported.removeValue(forKey: claim)
        }
    }
}
