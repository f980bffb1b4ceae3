/// One point of a disk's charts: what happened between two consecutive held samples.
public struct IOPoint: Sendable, Equatable {
    /// The end of the interval, on the samples' monotonic clock (seconds).
    public var time: Double
    /// How long the interval is.
    public var seconds: Double
    public var bytesPerSecond: PerOperation<Double> = [:]
    public var opsPerSecond: PerOperation<Double> = [:]
    /// Δ total time / Δ operations; absent when there was no such operation.
    public var latencyAvgNs: PerOperation<Double> = [:]
    /// From the histograms' deltas, when QEMU keeps histograms at both ends.
    public var latencyP99Ns: PerOperation<UInt64> = [:]
    /// Reads and writes in flight on average (Little's law: their time per second of wall time).
    public var queueDepth: Double

    public init(time: Double, seconds: Double, queueDepth: Double) {
        self.time = time
        self.seconds = seconds
        self.queueDepth = queueDepth
    }
}

/// The chart points of a disk's held history (see `IOWindows.history`).
public enum IOSeries {
    /// A point per pair of consecutive samples, oldest first. The samples come from one
    /// `IOWindows`, which never holds counters that went back (it starts anew), so the
    /// deltas are never negative; a pair with no time between them is skipped.
    public static func points(_ samples: [IOSample]) -> [IOPoint] {
        guard samples.count > 1 else { return [] }
        var points: [IOPoint] = []
        points.reserveCapacity(samples.count - 1)
        for i in 1..<samples.count {
            let a = samples[i - 1], b = samples[i]
            let seconds = b.time - a.time
            guard seconds > 0, b.counters.decreased(since: a.counters).isEmpty else { continue }
            let d = b.counters.delta(since: a.counters)
            let inFlight = Double(d[.totalReadTimeNs]) + Double(d[.totalWriteTimeNs])
            var p = IOPoint(time: b.time, seconds: seconds, queueDepth: inFlight / (seconds * 1e9))
            for op in IOOperation.allCases {
                let ops = d[op.opsCounter]
                p.opsPerSecond[op] = Double(ops) / seconds
                if let bytes = op.bytesCounter { p.bytesPerSecond[op] = Double(d[bytes]) / seconds }
                if ops > 0 { p.latencyAvgNs[op] = Double(d[op.timeCounter]) / Double(ops) }
                if let now = b.histograms[op], let then = a.histograms[op], let h = now.delta(since: then), let q = h.quantile(0.99) {
                    p.latencyP99Ns[op] = q
                }
            }
            points.append(p)
        }
        return points
    }
}
