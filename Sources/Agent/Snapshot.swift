import Hypervisor
import Synchronization
import VMPulseCore

/// One VM as the agent last saw it. Immutable, and cheap to publish every second:
/// it holds the readings (copy-on-write arrays) and renders the record's keys only
/// when somebody asks, which is far rarer than sampling.
public struct VMSnapshot: Sendable {
    public var machine: String
    public var name: String
    public var uuid: String
    /// Every group but `io`, from the last full pass.
    public var full: [StatsParam]
    /// The last I/O pass's disks and their windows.
    public var disks: [DiskIOReading]
    public var windows: [String: IOWindows]
    /// Whether the last I/O pass was answered.
    public var responsive: Bool
    public var errors: [String]
    /// Monotonic seconds when the VM last answered; nil if it never has.
    public var lastAnswer: Double?
    /// What the VM is made of, from the last full pass that could ask (see `describe`).
    public var description: MachineDescription?
    /// CPU use between the last two full passes.
    public var cpu: CPUUsage?
    /// When the QEMU process started (Unix seconds).
    public var startedAt: Double?
    /// What the guest agent last said; nil without one, or when it did not answer.
    public var guest: GuestInfo?

    public init(machine: String, name: String, uuid: String, full: [StatsParam], disks: [DiskIOReading] = [],
                windows: [String: IOWindows] = [:], responsive: Bool, errors: [String], lastAnswer: Double?,
                description: MachineDescription? = nil, cpu: CPUUsage? = nil, startedAt: Double? = nil, guest: GuestInfo? = nil) {
        self.guest = guest
        self.description = description
        self.cpu = cpu
        self.startedAt = startedAt
        self.machine = machine
        self.name = name
        self.uuid = uuid
        self.full = full
        self.disks = disks
        self.windows = windows
        self.responsive = responsive
        self.errors = errors
        self.lastAnswer = lastAnswer
    }

    /// Every key of the record: the full pass's groups, `state.monitor-response` from the
    /// last I/O pass, then `io`.
    public var params: [StatsParam] {
        var params = full.filter { $0.key != MonitorResponse.key }
        let response = StatsParam(MonitorResponse.key, .int(responsive ? MonitorResponse.responsive : MonitorResponse.unresponsive))
        params.insert(response, at: params.firstIndex { !$0.key.hasPrefix("state.") } ?? params.endIndex)
        if responsive || !disks.isEmpty { params += IOParams.params(disks: disks, windows: windows) }
        return params
    }

    /// The record served at monotonic time `now`, keeping only `groups`; `extra` are keys
    /// other services keep (the `thin` group).
    public func record(groups: Set<StatsGroup>, now: Double, extra: [StatsParam] = []) -> StatsRecord {
        let prefixes = groups.map { $0.keyPrefix + "." }
        let kept = (params + extra).filter { p in p.key == MonitorResponse.key || prefixes.contains { p.key.hasPrefix($0) } }
        return StatsRecord(name: name, uuid: uuid, params: kept, errors: errors, source: "agent",
                           statsAge: lastAnswer.map { max(0, now - $0) })
    }
}

/// A VM's CPU use over an interval, in percent of one host CPU (as oVirt's engine reads
/// `cpuUser` and `cpuSys`): `user` is the guest's vCPU time, `system` the rest of QEMU's.
public struct CPUUsage: Sendable, Equatable {
    public var user: Double
    public var system: Double
    /// The interval, in seconds.
    public var interval: Double

    public init(user: Double, system: Double, interval: Double) {
        self.user = user
        self.system = system
        self.interval = interval
    }

    /// The use between two samples of `cpu.time` and the vCPUs' summed times (ns), taken
    /// `interval` seconds apart; nil when a counter went back (a new QEMU) or no time passed.
    public static func between(_ a: (total: UInt64, vcpus: UInt64), _ b: (total: UInt64, vcpus: UInt64), interval: Double) -> CPUUsage? {
        guard interval > 0, b.total >= a.total, b.vcpus >= a.vcpus else { return nil }
        let total = Double(b.total - a.total), guest = Double(b.vcpus - a.vcpus)
        let scale = 100 / (interval * 1e9)
        return CPUUsage(user: guest * scale, system: max(0, total - guest) * scale, interval: interval)
    }

    /// `cpu.time` and the sum of `vcpu.N.time` in a record's parameters; nil without `cpu.time`.
    public static func sample(_ params: [StatsParam]) -> (total: UInt64, vcpus: UInt64)? {
        var total: UInt64?
        var vcpus: UInt64 = 0
        for p in params {
            if p.key == "cpu.time" { total = p.value.uint64 }
            else if p.key.hasPrefix("vcpu."), p.key.hasSuffix(".time"), let v = p.value.uint64 { vcpus = vcpus &+ v }
        }
        return total.map { ($0, vcpus) }
    }
}

/// The latest snapshot of every VM. Writers replace one VM at a time; readers copy
/// the whole map without waiting for any collection (a request never waits on QEMU).
public final class SnapshotStore: Sendable {
    private let vms = Mutex<[String: VMSnapshot]>([:])

    public init() {}

    public func publish(_ vm: VMSnapshot) {
        vms.withLock { $0[vm.machine] = vm }
    }

    public func remove(machine: String) {
        _ = vms.withLock { $0.removeValue(forKey: machine) }
    }

    /// One VM, by its machine.
    public func snapshot(machine: String) -> VMSnapshot? {
        vms.withLock { $0[machine] }
    }

    /// Every VM, by name.
    public func current() -> [VMSnapshot] {
        vms.withLock { Array($0.values) }.sorted { ($0.name, $0.uuid) < ($1.name, $1.uuid) }
    }
}
