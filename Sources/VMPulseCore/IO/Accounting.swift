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
    /// Unique for the host's uptime: pid and start time (`PID@TICKS`).
    public var id: String
    /// When the process started, in Unix seconds.
    public var startedAt: Double

    public init(id: String, startedAt: Double) {
        self.id = id
        self.startedAt = startedAt
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
/// Usage is attributed to the period in which it is observed; after the agent was
/// down, what happened meanwhile lands in the first period after it came back.
public struct Accounting: Sendable {
    public let periodSeconds: Int64
    /// When the ledger was created (Unix seconds); nil until the ledger is loaded.
    public private(set) var ledgerCreatedAt: Double?

    private var cursors: [DiskKey: LedgerCursor] = [:]
    private var waiting: [DiskKey: Observation] = [:]
    private var pendingUsage: [PeriodKey: PeriodUsage] = [:]
    private var pendingGaps: [UsageGap] = []
    private var dirty: Set<DiskKey> = []

    private struct PeriodKey: Hashable {
        var key: DiskKey
        var start: Int64
    }

    public init(periodSeconds: Int64) {
        self.periodSeconds = max(1, periodSeconds)
    }

    public var isLoaded: Bool { ledgerCreatedAt != nil }

    /// Starts accounting from the cursors the ledger holds. Readings taken before
    /// (while the ledger could not be read) are accounted now, from those cursors.
    public mutating func load(cursors persisted: [DiskKey: LedgerCursor], ledgerCreatedAt: Double) {
        self.ledgerCreatedAt = ledgerCreatedAt
        cursors = persisted
        let held = waiting.values.sorted { $0.time < $1.time }
        waiting.removeAll()
        for observation in held { observe(observation) }
    }

    public mutating func observe(_ o: Observation) {
        guard let created = ledgerCreatedAt else {
            waiting[o.key] = o  // the latest is enough: counters are cumulative
            return
        }
        let baseline: BlockCounters
        if let cursor = cursors[o.key] {
            if o.time < cursor.sampledAt && cursor.instance == o.instance.id { return }  // out of order: already counted
            if cursor.instance != o.instance.id {
                gap(o, from: cursor.sampledAt, to: max(cursor.sampledAt, o.instance.startedAt),
                    reason: "a new QEMU process (restart or incoming migration); the previous one's usage after its last reading is unknown")
                baseline = .zero
            } else if !o.counters.decreased(since: cursor.counters).isEmpty {
                gap(o, from: cursor.sampledAt, to: o.time,
                    reason: "counters went backwards within one QEMU (drive replaced); usage since the last reading is unknown")
                baseline = .zero
            } else {
                baseline = cursor.counters
            }
        } else if o.instance.startedAt + 1 >= created {
            baseline = .zero  // started after the ledger existed: every counter is ours to account
        } else {
            gap(o, from: o.instance.startedAt, to: o.time,
                reason: "this disk was first seen after its QEMU had run; usage before is not in the ledger")
            cursors[o.key] = LedgerCursor(instance: o.instance.id, counters: o.counters, sampledAt: o.time)
            dirty.insert(o.key)
            return
        }
        let delta = o.counters.delta(since: baseline)
        let start = Int64((o.time / Double(periodSeconds)).rounded(.down)) * periodSeconds
        let pk = PeriodKey(key: o.key, start: start)
        var entry = pendingUsage[pk] ?? PeriodUsage(
            key: o.key, vmName: o.vmName, diskPath: o.diskPath, periodStart: start, periodEnd: start + periodSeconds,
            usage: .zero, samples: 0)
        entry.usage += delta
        entry.samples += 1
        entry.vmName = o.vmName
        entry.diskPath = o.diskPath
        pendingUsage[pk] = entry
        cursors[o.key] = LedgerCursor(instance: o.instance.id, counters: o.counters, sampledAt: o.time)
        dirty.insert(o.key)
    }

    private mutating func gap(_ o: Observation, from: Double, to: Double, reason: String) {
        pendingGaps.append(UsageGap(key: o.key, vmName: o.vmName, from: from, to: to, reason: reason))
    }

    /// What to write now.
    public func batch() -> LedgerBatch {
        LedgerBatch(
            usage: pendingUsage.values.sorted { ($0.key, $0.periodStart) < ($1.key, $1.periodStart) },
            gaps: pendingGaps,
            cursors: cursors.filter { dirty.contains($0.key) })
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
        for (key, cursor) in batch.cursors where cursors[key] == cursor {
            dirty.remove(key)
        }
    }

    /// The accounted position of a disk (for tests and the health view).
    public func cursor(for key: DiskKey) -> LedgerCursor? { cursors[key] }
}
