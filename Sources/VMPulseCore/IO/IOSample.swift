/// The kinds of operations that have latency windows and histograms.
public enum IOOperation: String, CaseIterable, Sendable, Hashable {
    case read, write, flush

    var timeCounter: IOCounter {
        switch self {
        case .read: return .totalReadTimeNs
        case .write: return .totalWriteTimeNs
        case .flush: return .totalFlushTimeNs
        }
    }

    var opsCounter: IOCounter {
        switch self {
        case .read: return .readIOs
        case .write: return .writeIOs
        case .flush: return .flushIOs
        }
    }

    /// The bytes moved; a flush moves none.
    var bytesCounter: IOCounter? {
        switch self {
        case .read: return .readBytes
        case .write: return .writeBytes
        case .flush: return nil
        }
    }
}

/// One reading of one disk: when (on a monotonic clock, in seconds), its counters,
/// its latency histograms when QEMU keeps them, and QEMU's idle time.
public struct IOSample: Sendable, Equatable {
    public var time: Double
    public var counters: BlockCounters
    public var histograms: [IOOperation: LatencyHistogram]
    /// Nanoseconds since the disk's last I/O, when it has had any (QEMU's `idle_time_ns`).
    public var idleTimeNs: UInt64?

    public init(time: Double, counters: BlockCounters, histograms: [IOOperation: LatencyHistogram] = [:], idleTimeNs: UInt64? = nil) {
        self.time = time
        self.counters = counters
        self.histograms = histograms
        self.idleTimeNs = idleTimeNs
    }
}

/// A value per kind of operation, where a dictionary would do: three optionals in place.
/// The windows' figures are built for every disk of every VM on each scrape; with five
/// dictionaries each, building them was 9 % of the agent's CPU under back-to-back 500-VM
/// scrapes (perf, `make bench-metrics`).
public struct PerOperation<Value: Sendable & Equatable>: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    private var read: Value?
    private var write: Value?
    private var flush: Value?

    public init() {}

    public init(dictionaryLiteral elements: (IOOperation, Value)...) {
        for (op, value) in elements { self[op] = value }
    }

    public subscript(op: IOOperation) -> Value? {
        get {
            switch op {
            case .read: read
            case .write: write
            case .flush: flush
            }
        }
        set {
            switch op {
            case .read: read = newValue
            case .write: write = newValue
            case .flush: flush = newValue
            }
        }
    }
}
