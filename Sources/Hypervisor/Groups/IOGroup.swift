import QMP
import VMPulseCore

/// `io`: per disk, every counter of the accounting wishlist, from `query-blockstats`.
/// The windows (1 s, 1 min, 1 h latency, queue depth and percentiles) need a
/// history of samples, so the agent adds them; a one-shot `vmpulse stats` has the counters.
public enum IOGroup {
    /// Counters QEMU has reported since 2.5 or later; an older QEMU that lacks one reports 0.
    private static let required: Set<IOCounter> = [
        .readBytes, .writeBytes, .readIOs, .writeIOs, .flushIOs, .totalReadTimeNs, .totalWriteTimeNs, .totalFlushTimeNs,
    ]

    static func counters(_ stats: ReplyReader) throws(QMPError) -> BlockCounters {
        var c = BlockCounters()
        for counter in IOCounter.allCases {
            c[counter] = required.contains(counter) ? try stats.uint(counter.qemuName) : try stats.optionalUInt(counter.qemuName) ?? 0
        }
        return c
    }

    static func histograms(_ stats: ReplyReader) throws(QMPError) -> [IOOperation: LatencyHistogram] {
        var result: [IOOperation: LatencyHistogram] = [:]
        for (op, member) in [(IOOperation.read, "rd_latency_histogram"), (.write, "wr_latency_histogram"), (.flush, "flush_latency_histogram")] {
            guard let h = stats.optionalMember(member) else { continue }
            let boundaries = try h.member("boundaries").uintArray()
            let bins = try h.member("bins").uintArray()
            guard bins.count == boundaries.count + 1 else {
                throw .unexpectedReply(command: "query-blockstats", detail: "\(h.path): \(bins.count) bins for \(boundaries.count) boundaries")
            }
            result[op] = LatencyHistogram(boundaries: boundaries, bins: bins)
        }
        return result
    }

    /// The counter keys of the group (`io.N.name`, `io.N.write_bytes`, ..., `io.N.idle_time_ns`).
    public static func counterParams(index: Int, name: String, counters: BlockCounters, idleTimeNs: UInt64?,
                                     unreported: Set<IOCounter> = []) -> [StatsParam] {
        var w = ParamWriter()
        w.string("io.\(index).name", name)
        for counter in IOCounter.allCases where !unreported.contains(counter) { w.uint("io.\(index).\(counter.name)", counters[counter]) }
        w.uint("io.\(index).idle_time_ns", ifPresent: idleTimeNs)
        return w.params
    }

    static func params(_ drives: [BlockGroup.Drive]) -> [StatsParam] {
        var w = ParamWriter()
        w.uint("io.count", UInt64(drives.count))
        for (i, d) in drives.enumerated() {
            w.append(contentsOf: counterParams(index: i, name: d.name, counters: d.counters, idleTimeNs: d.idleTimeNs))
        }
        return w.params
    }
}
