/// A VM's state in a management engine's words (oVirt's VM statuses), from libvirt's
/// state and reason numbers (`DomainState`), for the engine verbs of the host API.
public enum EngineStatus {
    public static func name(state: Int64, reason: Int64) -> String {
        switch state {
        case DomainState.running, 2: return "Up"  // 2: blocked on a resource, still running
        case DomainState.paused:
            switch reason {
            case DomainState.pausedMigration: return "Migration Source"
            case DomainState.pausedSave: return "Saving State"
            case DomainState.pausedShuttingDown: return "Powering down"
            default: return "Paused"
            }
        case 4: return "Powering down"  // VIR_DOMAIN_SHUTDOWN: shutting down
        case 5, DomainState.crashed: return "Down"  // shut off, crashed
        case DomainState.pmSuspended: return "Suspended"
        default: return "Unknown"
        }
    }
}

/// Why a VM is paused, as oVirt names it (`pauseCode`).
public enum PauseCode: String, Sendable, Equatable {
    /// Paused because a disk ran out of space.
    case noSpace = "ENOSPC"
    /// Paused on another I/O error.
    case ioError = "EIO"
    /// Paused for another reason (an operator, a migration).
    case other = "EOTHER"
    /// Not paused.
    case none = "NOERR"
}
