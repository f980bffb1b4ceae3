import Synchronization
import VMPulseCore

/// One VM as the agent last saw it. Immutable: readers take it as it is.
public struct VMSnapshot: Sendable {
    public var socketPath: String
    public var name: String
    public var uuid: String
    /// The record: every group from the last full pass, `io` from the last I/O pass.
    public var params: [StatsParam]
    public var errors: [String]
    /// Monotonic seconds when the VM last answered; nil if it never has.
    public var lastAnswer: Double?

    public init(socketPath: String, name: String, uuid: String, params: [StatsParam], errors: [String], lastAnswer: Double?) {
        self.socketPath = socketPath
        self.name = name
        self.uuid = uuid
        self.params = params
        self.errors = errors
        self.lastAnswer = lastAnswer
    }

    /// The record served at monotonic time `now`, keeping only `groups`.
    public func record(groups: Set<StatsGroup>, now: Double) -> StatsRecord {
        let prefixes = groups.map { $0.keyPrefix + "." }
        let kept = params.filter { p in p.key == "state.monitor-response" || prefixes.contains { p.key.hasPrefix($0) } }
        return StatsRecord(name: name, uuid: uuid, params: kept, errors: errors, source: "agent",
                           statsAge: lastAnswer.map { max(0, now - $0) })
    }
}

/// The latest snapshot of every VM. Writers replace one VM at a time; readers copy
/// the whole map without waiting for any collection (a request never waits on QEMU).
public final class SnapshotStore: Sendable {
    private let vms = Mutex<[String: VMSnapshot]>([:])

    public init() {}

    public func publish(_ vm: VMSnapshot) {
        vms.withLock { $0[vm.socketPath] = vm }
    }

    public func remove(socketPath: String) {
        _ = vms.withLock { $0.removeValue(forKey: socketPath) }
    }

    /// Every VM, by name.
    public func current() -> [VMSnapshot] {
        vms.withLock { Array($0.values) }.sorted { ($0.name, $0.uuid) < ($1.name, $1.uuid) }
    }
}
