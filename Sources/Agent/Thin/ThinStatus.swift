import Hypervisor
import Synchronization
import VMPulseCore

/// What one thin disk looks like now, for the `thin` group and `/v1/thin`.
public struct ThinDiskStatus: Sendable, Equatable {
    public var label: String
    public var vm: String
    public var vmName: String?
    public var vmUUID: String?
    public var drive: String
    public var node: String?
    public var state: String
    public var reason: String?
    /// The write threshold armed in QEMU; nil when none is (not `set`).
    public var mark: UInt64?
    public var physical: UInt64
    public var maximum: UInt64?
    public var extensions: Int
    public var failures: Int
    public var pausesRecovered: Int
    /// The guest is paused out of space on this disk and not resumed yet.
    public var pausedForSpace: Bool
    /// The last extension: from the event to the device's new size, verified.
    public var lastExtensionMs: Double?
    /// The last cycle: from the event's arrival to the next mark set.
    public var lastCycleMs: Double?
    /// The most recent cycles (up to 1024), oldest first, in ms.
    public var recentCyclesMs: [Double]
    /// Why this disk cannot do its work, when it cannot (see `ThinDisk.problem`): the agent's
    /// health is degraded while any disk has one. Nil for a disk that works, waits for its
    /// VM, or failed fewer than `failuresBeforeProblem` times in a row.
    public var problem: String? = nil

    /// Failures in a row before a disk in backoff is a problem: one passing failure (a
    /// monitor slow to answer) must not flap the agent's health.
    public static let failuresBeforeProblem = 3

    /// The `thin.N.*` keys of one disk.
    func params(index i: Int) -> [StatsParam] {
        var w = ParamWriter()
        w.string("thin.\(i).name", drive)
        if let node { w.string("thin.\(i).node", node) }
        w.string("thin.\(i).state", state)
        if let reason { w.string("thin.\(i).reason", reason) }
        w.uint("thin.\(i).threshold", ifPresent: mark)
        w.uint("thin.\(i).physical", physical)
        w.uint("thin.\(i).maximum", ifPresent: maximum)
        w.uint("thin.\(i).extensions", UInt64(extensions))
        w.uint("thin.\(i).failures", UInt64(failures))
        w.uint("thin.\(i).pauses_recovered", UInt64(pausesRecovered))
        w.uint("thin.\(i).paused", pausedForSpace ? 1 : 0)
        if let v = lastExtensionMs { w.double("thin.\(i).last_extension_ms", v) }
        if let v = lastCycleMs { w.double("thin.\(i).last_cycle_ms", v) }
        return w.params
    }
}

/// The thin disks' statuses, written by their monitor, read by the API without waiting.
public final class ThinStatusStore: Sendable {
    private let disks = Mutex<[String: ThinDiskStatus]>([:])
    /// Where an extension is announced (the host API's subscribers), when set.
    private let bus: AgentEventBus?

    public init(bus: AgentEventBus? = nil) {
        self.bus = bus
    }

    func publish(_ status: ThinDiskStatus) {
        let before = disks.withLock { table in
            defer { table[status.label] = status }
            return table[status.label]
        }
        if let bus, let before, status.extensions > before.extensions {
            var data: [String: JSONValue] = ["disk": .string(status.label), "drive": .string(status.drive), "physical": .uint(status.physical),
                                             "extensions": .int(Int64(status.extensions))]
            if let ms = status.lastExtensionMs { data["duration_ms"] = .double(ms) }
            bus.publish(AgentEvent(kind: .extended, vm: status.vmUUID ?? status.vm, name: status.vmName ?? status.vm, data: data,
                                   time: MonotonicTime.wallNow()))
        }
    }

    public func all() -> [ThinDiskStatus] {
        disks.withLock { Array($0.values) }.sorted { $0.label < $1.label }
    }

    /// The disks that cannot do their work, for `/v1/health`.
    public func problems() -> [ThinDiskStatus] {
        all().filter { $0.problem != nil }
    }

    /// The `thin` group of the VM with this name or UUID.
    public func params(vmName: String, vmUUID: String) -> [StatsParam] {
        let mine = all().filter { $0.vm == vmName || $0.vm == vmUUID || ($0.vmUUID != nil && $0.vmUUID == vmUUID) }
        var params = [StatsParam("thin.count", .uint(UInt64(mine.count)))]
        for (i, disk) in mine.enumerated() { params += disk.params(index: i) }
        return params
    }
}
