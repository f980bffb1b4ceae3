/// The 1 s, 1 min and 1 h windows of one disk, computed from counter deltas so
/// they work for any backend and any QEMU drive option:
///
/// - average latency of an operation = Δ total time / Δ operations (absent when
///   there was no such operation in the window);
/// - average queue depth = Δ total time / Δ wall time (Little's law: the time
///   requests spent in flight, per second of wall time);
/// - p50/p99 latency from the deltas of QEMU's latency histograms, when on.
///
/// Windows slide: each ends at the latest sample and starts at the newest sample
/// at least the window's length older. Memory is bounded: per-sample history for
/// the last `recentSeconds` and one sample a minute for the last hour. Until a
/// window's worth of history exists, the window covers what there is.
public struct IOWindows: Sendable {
    public static let windows: [(label: String, seconds: Double)] = [("1s", 1), ("1m", 60), ("1h", 3600)]

    private var recent: [IOSample] = []
    private var minutely: [IOSample] = []
    private let recentSeconds: Double

    public init(recentSeconds: Double = 75) {
        self.recentSeconds = recentSeconds
    }

    public var latest: IOSample? { recent.last }

    /// Every held sample, oldest first: one a minute over the last hour, then each one of
    /// the last `recentSeconds` (the panel's charts, through `IOSeries.points`).
    public var history: [IOSample] {
        guard let first = recent.first else { return [] }
        return minutely.filter { $0.time < first.time } + recent
    }

    /// Adds a sample. Counters that went backwards (a new QEMU) start the history anew.
    public mutating func record(_ sample: IOSample) {
        if let last = recent.last, !sample.counters.decreased(since: last.counters).isEmpty || sample.time < last.time {
            recent.removeAll()
            minutely.removeAll()
        }
        recent.append(sample)
        if let cut = recent.firstIndex(where: { $0.time >= sample.time - recentSeconds }), cut > 1 {
            recent.removeFirst(cut - 1)  // keep one sample older than the horizon
        }
        if minutely.last.map({ sample.time - $0.time >= 60 }) ?? true {
            minutely.append(sample)
            if minutely.count > 62 { minutely.removeFirst(minutely.count - 62) }
        }
    }

    /// The sample a window of `seconds` starts from: the newest at least that old (among
    /// those `usable`), or the oldest usable one there is.
    func base(forWindow seconds: Double, where usable: (IOSample) -> Bool = { _ in true }) -> IOSample? {
        guard let latest = recent.last else { return nil }
        let cutoff = latest.time - seconds + 0.05  // sampling jitter: a sample 0.95 s old starts a 1 s window
        if let s = recent.last(where: { $0.time <= cutoff && usable($0) }) { return s }
        if let s = minutely.last(where: { $0.time <= cutoff && usable($0) }) { return s }
        // The oldest usable sample, without joining the two arrays: at 500 VMs this fallback
        // (every window longer than the agent has run) copied each held sample per scrape.
        let a = minutely.first(where: usable), b = recent.first(where: usable)
        let oldest = [a, b].compactMap { $0 }.min { $0.time < $1.time }
        return oldest.flatMap { $0.time < latest.time ? $0 : nil }
    }

    /// The figures of one window.
    public struct Figures: Sendable, Equatable {
        public var seconds: Double
        public var latencyAvgNs: PerOperation<Double> = [:]
        public var queueDepthAvg: PerOperation<Double> = [:]
        public var latencyP50Ns: PerOperation<UInt64> = [:]
        public var latencyP99Ns: PerOperation<UInt64> = [:]
        public var bytesPerSecond: PerOperation<Double> = [:]
        public var opsPerSecond: PerOperation<Double> = [:]
    }

    public func figures(window seconds: Double) -> Figures? {
        guard let latest = recent.last, let base = base(forWindow: seconds) else { return nil }
        let wallNs = (latest.time - base.time) * 1e9
        guard wallNs > 0 else { return nil }
        var f = Figures(seconds: latest.time - base.time)
        let d = latest.counters.delta(since: base.counters)
        for op in IOOperation.allCases {
            let time = Double(d[op.timeCounter])
            let ops = d[op.opsCounter]
            if ops > 0 { f.latencyAvgNs[op] = time / Double(ops) }
            f.opsPerSecond[op] = Double(ops) / (wallNs / 1e9)
            if let bytes = op.bytesCounter { f.bytesPerSecond[op] = Double(d[bytes]) / (wallNs / 1e9) }
            if op != .flush { f.queueDepthAvg[op] = time / wallNs }
            // Histograms may have been switched on after the window's start: start from the first sample that has one.
            let histogramBase = base.histograms[op] != nil ? base : self.base(forWindow: seconds) { $0.histograms[op] != nil }
            if let now = latest.histograms[op], let then = histogramBase?.histograms[op], let h = now.delta(since: then) {
                f.latencyP50Ns[op] = h.quantile(0.50)
                f.latencyP99Ns[op] = h.quantile(0.99)
            }
        }
        return f
    }

    /// How many samples are held (for tests of the memory bound).
    public var heldSamples: Int { recent.count + minutely.count }
}
