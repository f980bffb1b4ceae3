/// The cumulative I/O counters of one disk that billing and the `io` group use,
/// named as in the cloud provider's wishlist (../shared/seeds/io-accounting-wishlist.txt).
/// Invalid and failed operations are counters of their own, never folded into the others:
/// what to bill for them is the provider's decision.
public enum IOCounter: Int, CaseIterable, Sendable, Hashable {
    case readBytes, writeBytes, unmapBytes
    case readIOs, writeIOs, flushIOs, unmapIOs
    case invalidReadIOs, invalidWriteIOs, invalidFlushIOs, invalidUnmapIOs
    case readIOsError, writeIOsError, flushIOsError, unmapIOsError
    case totalReadTimeNs, totalWriteTimeNs, totalFlushTimeNs, totalUnmapTimeNs

    /// The name in the `io` group, the ledger's columns and the billing export.
    public var name: String {
        switch self {
        case .readBytes: return "read_bytes"
        case .writeBytes: return "write_bytes"
        case .unmapBytes: return "unmap_bytes"
        case .readIOs: return "read_ios"
        case .writeIOs: return "write_ios"
        case .flushIOs: return "flush_ios"
        case .unmapIOs: return "unmap_ios"
        case .invalidReadIOs: return "invalid_read_ios"
        case .invalidWriteIOs: return "invalid_write_ios"
        case .invalidFlushIOs: return "invalid_flush_ios"
        case .invalidUnmapIOs: return "invalid_unmap_ios"
        case .readIOsError: return "read_ios_error"
        case .writeIOsError: return "write_ios_error"
        case .flushIOsError: return "flush_ios_error"
        case .unmapIOsError: return "unmap_ios_error"
        case .totalReadTimeNs: return "total_read_time_ns"
        case .totalWriteTimeNs: return "total_write_time_ns"
        case .totalFlushTimeNs: return "total_flush_time_ns"
        case .totalUnmapTimeNs: return "total_unmap_time_ns"
        }
    }

    /// The member of QEMU's `BlockDeviceStats` it comes from.
    public var qemuName: String {
        switch self {
        case .readBytes: return "rd_bytes"
        case .writeBytes: return "wr_bytes"
        case .unmapBytes: return "unmap_bytes"
        case .readIOs: return "rd_operations"
        case .writeIOs: return "wr_operations"
        case .flushIOs: return "flush_operations"
        case .unmapIOs: return "unmap_operations"
        case .invalidReadIOs: return "invalid_rd_operations"
        case .invalidWriteIOs: return "invalid_wr_operations"
        case .invalidFlushIOs: return "invalid_flush_operations"
        case .invalidUnmapIOs: return "invalid_unmap_operations"
        case .readIOsError: return "failed_rd_operations"
        case .writeIOsError: return "failed_wr_operations"
        case .flushIOsError: return "failed_flush_operations"
        case .unmapIOsError: return "failed_unmap_operations"
        case .totalReadTimeNs: return "rd_total_time_ns"
        case .totalWriteTimeNs: return "wr_total_time_ns"
        case .totalFlushTimeNs: return "flush_total_time_ns"
        case .totalUnmapTimeNs: return "unmap_total_time_ns"
        }
    }

    public var unit: String {
        switch self {
        case .readBytes, .writeBytes, .unmapBytes: return "bytes"
        case .totalReadTimeNs, .totalWriteTimeNs, .totalFlushTimeNs, .totalUnmapTimeNs: return "ns"
        default: return "operations"
        }
    }
}

/// One disk's counters at one instant (cumulative since its QEMU started), or a
/// difference of two such readings.
public struct BlockCounters: Sendable, Equatable, Hashable {
    private var values: [UInt64]

    public init() {
        values = [UInt64](repeating: 0, count: IOCounter.allCases.count)
    }

    public init(_ pairs: [IOCounter: UInt64]) {
        self.init()
        for (counter, value) in pairs { self[counter] = value }
    }

    public subscript(counter: IOCounter) -> UInt64 {
        get { values[counter.rawValue] }
        set { values[counter.rawValue] = newValue }
    }

    public static let zero = BlockCounters()

    /// The counters that are smaller in `self` than in `earlier`: any means the
    /// counters restarted (a new QEMU, a replaced drive) since `earlier`.
    public func decreased(since earlier: BlockCounters) -> [IOCounter] {
        IOCounter.allCases.filter { self[$0] < earlier[$0] }
    }

    /// `self - earlier`, counter by counter. Only meaningful when nothing decreased.
    public func delta(since earlier: BlockCounters) -> BlockCounters {
        var d = BlockCounters()
        for c in IOCounter.allCases { d[c] = self[c] &- earlier[c] }
        return d
    }

    public static func + (lhs: BlockCounters, rhs: BlockCounters) -> BlockCounters {
        var sum = lhs
        for c in IOCounter.allCases { sum[c] = lhs[c] &+ rhs[c] }
        return sum
    }

    public static func += (lhs: inout BlockCounters, rhs: BlockCounters) {
        lhs = lhs + rhs
    }

    /// `self + other`, and the counters whose sum would not fit in 64 bits (each of
    /// those is left at `UInt64.max` in the sum). Billing adds with this: a lying peer's
    /// counters near 2^64 must not wrap a period's total round to a small number.
    public func addingReportingOverflow(_ other: BlockCounters) -> (sum: BlockCounters, overflow: [IOCounter]) {
        var sum = self
        var overflow: [IOCounter] = []
        for c in IOCounter.allCases {
            let (value, over) = self[c].addingReportingOverflow(other[c])
            sum[c] = over ? .max : value
            if over { overflow.append(c) }
        }
        return (sum, overflow)
    }

    public var isZero: Bool { values.allSatisfy { $0 == 0 } }
}
