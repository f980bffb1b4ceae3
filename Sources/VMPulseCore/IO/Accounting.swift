/// A disk of a VM, as the ledger knows it.
public struct DiskKey: Hashable, Sendable, Comparable {
    public var vmUUID: String
    public var disk: String

    public init(vmUUID: String, disk: String) {
        self.vmUUID = vmUUID
        self.disk = disk
    }

    public static func < (a: DiskKey, b: DiskKey) -> Bool { (a.vmUUID, a.disk) < (b.vmUUID, b.disk) }
}

/// One QEMU process: counters are cumulative within it and start at zero in the next.
public struct QEMUInstance: Hashable, Sendable {
    /// Unique for good: pid, start time (clock ticks after boot) and the host's boot id
    /// (`PID@TICKS@BOOTID`); pid and start time alone come round again after a reboot.
    public var id: String
    /// When the process started, in Unix seconds.
    public var startedAt: Double

    public init(id: String, startedAt: Double) {
        self.id = id
        self.startedAt = startedAt
    }

    public init(pid: Int32, startTicks: UInt64, bootID: String, startedAt: Double) {
        self.init(id: "\(pid)@\(startTicks)@\(bootID)", startedAt: startedAt)
    }

    /// The process id (the first part of `id`).
    public var pid: Int32? {
        id.split(separator: "@", maxSplits: 1).first.flatMap { Int32($0) }
    }

    /// The id older agents wrote for this process (`PID@TICKS`).
    var legacyID: String {
        let parts = id.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count >= 2 ? parts[0] + "@" + parts[1] : id
    }

    static func isLegacy(_ id: String) -> Bool {
        id.split(separator: "@", omittingEmptySubsequences: false).count == 2
    }

    /// Whether a cursor written for `recorded` is this process's. Ledgers written before
    /// the boot id was part of the id hold `PID@TICKS`: such a cursor is this process's
    /// when pid and start time match and it was taken while this process ran (so in this boot).
    func wrote(_ recorded: String, at sampledAt: Double) -> Bool {
        if recorded == id { return true }
        guard recorded.split(separator: "@", omittingEmptySubsequences: false).count == 2 else { return false }
        return id.hasPrefix(recorded + "@") && sampledAt >= startedAt
    }
}

/// How far a disk's usage is accounted: the counters of one QEMU instance at one time.
public struct LedgerCursor: Sendable, Equatable {
    public var instance: String
    public var counters: BlockCounters
    /// Unix seconds.
    public var sampledAt: Double

    public init(instance: String, counters: BlockCounters, sampledAt: Double) {
        self.instance = instance
        self.counters = counters
        self.sampledAt = sampledAt
    }
}

/// One reading of a disk, as the sampler hands it to accounting.
public struct Observation: Sendable {
    public var key: DiskKey
    public var vmName: String
    public var diskPath: String
    public var instance: QEMUInstance
    public var counters: BlockCounters
    /// Unix seconds.
    public var time: Double

    public init(key: DiskKey, vmName: String, diskPath: String, instance: QEMUInstance, counters: BlockCounters, time: Double) {
        self.key = key
        self.vmName = vmName
        self.diskPath = diskPath
        self.instance = instance
        self.counters = counters
        self.time = time
    }
}

/// Usage of one disk in one billing period, as deltas.
public struct PeriodUsage: Sendable, Equatable {
    public var key: DiskKey
    public var vmName: String
    public var diskPath: String
    /// Unix seconds; the period is [start, end).
    public var periodStart: Int64
    public var periodEnd: Int64
    public var usage: BlockCounters
    public var samples: Int

    public init(key: DiskKey, vmName: String, diskPath: String, periodStart: Int64, periodEnd: Int64, usage: BlockCounters, samples: Int) {
        self.key = key
        self.vmName = vmName
        self.diskPath = diskPath
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.usage = usage
        self.samples = samples
    }
}

/// A span whose usage cannot be known, recorded instead of guessed.
public struct UsageGap: Sendable, Equatable {
    public var key: DiskKey
    public var vmName: String
    /// Unix seconds.
    public var from: Double
    public var to: Double
    public var reason: String

    public init(key: DiskKey, vmName: String, from: Double, to: Double, reason: String) {
        self.key = key
        self.vmName = vmName
        self.from = from
        self.to = to
        self.reason = reason
    }
}

/// What one flush writes to the ledger, in one transaction.
public struct LedgerBatch: Sendable, Equatable {
    public var usage: [PeriodUsage]
    public var gaps: [UsageGap]
    public var cursors: [DiskKey: LedgerCursor]

    public init(usage: [PeriodUsage], gaps: [UsageGap], cursors: [DiskKey: LedgerCursor]) {
        self.usage = usage
        self.gaps = gaps
        self.cursors = cursors
    }

    public var isEmpty: Bool { usage.isEmpty && gaps.isEmpty && cursors.isEmpty }
}

/// Turns disk readings into billing deltas that are never negative and never counted twice.
///
/// QEMU's counters are cumulative for the life of its process, so the ledger
/// keeps, per disk, a cursor: which QEMU instance and which counter values have
/// been accounted. A reading of the same instance adds `reading - cursor`; a
/// reading of a new instance (QEMU restarted, VM migrated in) adds the reading
/// itself, since the new counters started at zero, and records a gap for what
/// the old instance did after its last reading. The cursor is written in the same
/// transaction as the usage, so an agent killed at any moment resumes from the last
/// cursor it wrote, and the counters still hold everything since.
///
/// How far an instance's counters are accounted is also followed per instance and
/// disk, whatever key the readings were filed under: a VM whose ledger key changes
/// (its identity completed, a clone with its UUID appeared or went) goes on from where
/// its counters were, under the new key, and is never billed for the same counts twice.
///
/// Usage is attributed to the period in which it is observed; after the agent was
/// down, what happened meanwhile lands in the first period after it came back.
public struct Accounting: Sendable {
    public let periodSeconds: Int64
    /// When the ledger was created (Unix seconds); nil until the ledger is loaded.
    public private(set) var ledgerCreatedAt: Double?

    private var cursors: [DiskKey: LedgerCursor] = [:]
    /// The newest cursor of each instance's disk, under whichever key it was taken.
    private var byInstance: [InstanceDisk: LedgerCursor] = [:]
    private var waiting: [DiskKey: Observation] = [:]
    private var pendingUsage: [PeriodKey: PeriodUsage] = [:]
    private var pendingGaps: [UsageGap] = []
    private var dirty: Set<DiskKey> = []

    private struct PeriodKey: Hashable {
        var key: DiskKey
        var start: Int64
    }

    private struct InstanceDisk: Hashable {
        var instance: String
        var disk: String
    }

    /// Where each process's own cursor is kept in the ledger, beside the keys' cursors:
    /// `instance:PID@TICKS@BOOT` as the key, so that an agent restarted after a VM moved
    /// between keys (or lost its key to a clone while it did not answer) still knows how
    /// far that process was billed.
    public static let instancePrefix = "instance:"
    /// Cursors written by agents before the boot id was part of the id (`PID@TICKS`).
    private var legacy: [InstanceDisk: LedgerCursor] = [:]
    private var dirtyInstances: Set<InstanceDisk> = []

    private mutating func follow(_ ik: InstanceDisk, _ cursor: LedgerCursor) {
        if let known = byInstance[ik], known.sampledAt >= cursor.sampledAt { return }
        byInstance[ik] = cursor
    }

    /// The most processes' disks followed in memory (`maxFollowed`: see `advance`).
    public let maxFollowed: Int

    public init(periodSeconds: Int64, maxFollowed: Int = 100_000) {
        self.periodSeconds = max(1, periodSeconds)
        self.maxFollowed = max(2, maxFollowed)
    }

    public var isLoaded: Bool { ledgerCreatedAt != nil }

    /// Starts accounting from the cursors the ledger holds. Readings taken before
    /// (while the ledger could not be read) are accounted now, from those cursors.
    public mutating func load(cursors persisted: [DiskKey: LedgerCursor], ledgerCreatedAt: Double) {
        self.ledgerCreatedAt = ledgerCreatedAt
        cursors = [:]
        byInstance = [:]
        legacy = [:]
        for (key, cursor) in persisted {
            if key.vmUUID.hasPrefix(Self.instancePrefix) {
                follow(InstanceDisk(instance: cursor.instance, disk: key.disk), cursor)
            } else {
                cursors[key] = cursor
                follow(InstanceDisk(instance: cursor.instance, disk: key.disk), cursor)
                if QEMUInstance.isLegacy(cursor.instance) {
                    let lk = InstanceDisk(instance: cursor.instance, disk: key.disk)
                    if (legacy[lk]?.sampledAt ?? -.infinity) < cursor.sampledAt { legacy[lk] = cursor }
                }
            }
        }
        let held = waiting.values.sorted { $0.time < $1.time }
        waiting.removeAll()
        for observation in held { observe(observation) }
    }

    /// How far this instance's disk is accounted: its own cursor under any key, or
    /// the key's cursor when that one was written for this process by an older agent.
    private func accounted(_ o: Observation) -> LedgerCursor? {
        if let own = byInstance[InstanceDisk(instance: o.instance.id, disk: o.key.disk)] { return own }
        if let cursor = cursors[o.key], o.instance.wrote(cursor.instance, at: cursor.sampledAt) { return cursor }
        if let old = legacy[InstanceDisk(instance: o.instance.legacyID, disk: o.key.disk)], o.instance.wrote(old.instance, at: old.sampledAt) {
            return old
        }
        return nil
    }

    public mutating func observe(_ o: Observation) {
        guard let created = ledgerCreatedAt else {
            waiting[o.key] = o  // the latest is enough: counters are cumulative
            return
        }
        let baseline: BlockCounters
        if let own = accounted(o) {
            // Out of order: already counted. (Ordered by time, not by the counters: a late
            // reading from before a drive was replaced has larger counters than the cursor.
            // A wall clock stepped back therefore holds billing until it catches up.)
            if o.time < own.sampledAt { return }
            let decreased = o.counters.decreased(since: own.counters)
            if !decreased.isEmpty {
                // QEMU's counters restart together (a replaced drive): all start from zero.
                gap(o, from: own.sampledAt, to: max(own.sampledAt, o.time),
                    reason: "counters went backwards within one QEMU (\(decreased.map(\.name).joined(separator: ", ")): drive replaced); usage since the last reading is unknown")
                baseline = .zero
            } else {
                baseline = own.counters
            }
        } else {
            // A process this ledger has not accounted before. The key's previous process
            // left a tail nobody read, unless it went on under another key since.
            if let previous = cursors[o.key], isLatest(previous, disk: o.key.disk) {
                gap(o, from: previous.sampledAt, to: max(previous.sampledAt, o.instance.startedAt),
                    reason: "a new QEMU process (restart or incoming migration); the previous one's usage after its last reading is unknown")
            }
            guard o.instance.startedAt + 1 >= created else {
                firstSeenLate(o)
                return
            }
            baseline = .zero  // started after the ledger existed: every counter is ours to account
        }
        let delta = o.counters.delta(since: baseline)
        // The time is the host's wall clock; a clock past year 9999 (or not finite) would
        // trap converting to Int64: such a reading is a gap, not a crash.
        guard o.time.isFinite, abs(o.time) < 253_402_300_800 else {
            gap(o, from: o.time.isFinite ? o.time : 0, to: o.time.isFinite ? o.time : 0,
                reason: "the host's clock read \(o.time), outside the years 0 to 9999; this reading's usage is not billed")
            return
        }
        let start = Int64((o.time / Double(periodSeconds)).rounded(.down)) * periodSeconds
        let pk = PeriodKey(key: o.key, start: start)
        var entry = pendingUsage[pk] ?? PeriodUsage(
            key: o.key, vmName: o.vmName, diskPath: o.diskPath, periodStart: start, periodEnd: start + periodSeconds,
            usage: .zero, samples: 0)
        let (sum, overflow) = entry.usage.addingReportingOverflow(delta)
        if overflow.isEmpty {
            entry.usage = sum
            entry.samples += 1
        } else {
            gap(o, from: o.time, to: o.time,
                reason: "the period's total of \(overflow.map(\.name).joined(separator: ", ")) would pass 2^64 - 1; this reading's usage is not billed")
        }
        entry.vmName = o.vmName
        entry.diskPath = o.diskPath
        pendingUsage[pk] = entry
        advance(o)
    }

    /// Whether `cursor` is still the newest reading of its instance's disk (the process
    /// has not gone on under another key since).
    private func isLatest(_ cursor: LedgerCursor, disk: String) -> Bool {
        byInstance[InstanceDisk(instance: cursor.instance, disk: disk)].map { $0.sampledAt <= cursor.sampledAt } ?? true
    }

    /// A disk first seen after its QEMU had run (before the ledger existed): what it did
    /// before is not ours to bill; accounting starts from this reading.
    private mutating func firstSeenLate(_ o: Observation) {
        gap(o, from: o.instance.startedAt, to: o.time,
            reason: "this disk was first seen after its QEMU had run; usage before is not in the ledger")
        advance(o)
    }

    private mutating func advance(_ o: Observation) {
        let cursor = LedgerCursor(instance: o.instance.id, counters: o.counters, sampledAt: o.time)
        let ik = InstanceDisk(instance: o.instance.id, disk: o.key.disk)
        cursors[o.key] = cursor
        byInstance[ik] = cursor
        dirty.insert(o.key)
        dirtyInstances.insert(ik)
        // Bounded in memory: processes not read for a week have ended (or their VM has not
        // answered for that long); their cursors stay in the ledger.
        if byInstance.count > maxFollowed {
            let cutoff = o.time - Self.followedFor
            byInstance = byInstance.filter { $0.value.sampledAt > cutoff }
            if byInstance.count > maxFollowed / 2 {
                let newest = byInstance.sorted { $0.value.sampledAt > $1.value.sampledAt }.prefix(maxFollowed / 2)
                byInstance = Dictionary(uniqueKeysWithValues: newest.map { ($0.key, $0.value) })
            }
        }
    }

    /// How long a process is followed in memory after its last reading.
    static let followedFor: Double = 7 * 86_400

    /// How many processes' disks are followed (for tests of the memory bound).
    public var followedInstanceDisks: Int { byInstance.count }

    private mutating func gap(_ o: Observation, from: Double, to: Double, reason: String) {
        pendingGaps.append(UsageGap(key: o.key, vmName: o.vmName, from: from, to: to, reason: reason))
    }

    /// What to write now.
    public func batch() -> LedgerBatch {
        var written = cursors.filter { dirty.contains($0.key) }
        for ik in dirtyInstances {
            if let c = byInstance[ik] { written[DiskKey(vmUUID: Self.instancePrefix + ik.instance, disk: ik.disk)] = c }
        }
        return LedgerBatch(
            usage: pendingUsage.values.sorted { ($0.key, $0.periodStart) < ($1.key, $1.periodStart) },
            gaps: pendingGaps,
            cursors: written)
    }

    /// Forgets what `batch` wrote; what was observed since stays pending.
    public mutating func committed(_ batch: LedgerBatch) {
        for written in batch.usage {
            let pk = PeriodKey(key: written.key, start: written.periodStart)
            guard var entry = pendingUsage[pk] else { continue }
            entry.usage = entry.usage.delta(since: written.usage)
            entry.samples -= written.samples
            pendingUsage[pk] = entry.samples <= 0 && entry.usage.isZero ? nil : entry
        }
        pendingGaps.removeFirst(min(batch.gaps.count, pendingGaps.count))
        for (key, cursor) in batch.cursors {
            if key.vmUUID.hasPrefix(Self.instancePrefix) {
                let ik = InstanceDisk(instance: cursor.instance, disk: key.disk)
                if byInstance[ik] == cursor { dirtyInstances.remove(ik) }
            } else if cursors[key] == cursor {
                dirty.remove(key)
            }
        }
    }

    /// The accounted position of a disk (for tests and the health view).
    public func cursor(for key: DiskKey) -> LedgerCursor? { cursors[key] }
}
