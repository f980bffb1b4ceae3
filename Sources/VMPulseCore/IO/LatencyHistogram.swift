/// A cumulative latency histogram of one kind of operation, as QEMU reports it
/// after `block-latency-histogram-set`: `bins[i]` counts operations whose
/// latency fell in [boundaries[i-1], boundaries[i]) (the first from 0, the last
/// without an upper bound), in nanoseconds.
public struct LatencyHistogram: Sendable, Equatable, Hashable {
    public var boundaries: [UInt64]
    public var bins: [UInt64]

    public init(boundaries: [UInt64], bins: [UInt64]) {
        self.boundaries = boundaries
        self.bins = bins
    }

    /// The histogram of the operations between `earlier` and `self`; nil when the two
    /// do not have the same boundaries or a bin decreased (the histogram was reset).
    public func delta(since earlier: LatencyHistogram) -> LatencyHistogram? {
        guard boundaries == earlier.boundaries, bins.count == earlier.bins.count else { return nil }
        var d: [UInt64] = []
        for (now, then) in zip(bins, earlier.bins) {
            guard now >= then else { return nil }
            d.append(now - then)
        }
        return LatencyHistogram(boundaries: boundaries, bins: d)
    }

    /// Whether the boundaries are strictly increasing and there is one bin more than
    /// boundaries. QEMU accepts any list from any monitor (decreasing ones, values near
    /// 2^64), and another client may have set one: such a histogram gives no quantile.
    public var isWellFormed: Bool {
        bins.count == boundaries.count + 1 && zip(boundaries, boundaries.dropFirst()).allSatisfy { $0 < $1 }
    }

    /// An estimate of the `fraction` quantile (0.5 for the median) in ns, interpolating
    /// linearly inside the bin it falls in. In the last bin, which has no upper bound, the
    /// estimate is that bin's lower boundary: the true value is at least that. Nil with no
    /// operations or when the histogram is not well formed. Counts are added as doubles,
    /// so bins whose sum passes 2^64 cannot trap.
    public func quantile(_ fraction: Double) -> UInt64? {
        guard isWellFormed, fraction.isFinite else { return nil }
        let total = bins.reduce(0.0) { $0 + Double($1) }
        guard total > 0 else { return nil }
        let rank = max(1, (total * min(1, max(0, fraction))).rounded(.up))
        var seen = 0.0
        for (i, count) in bins.enumerated() where count > 0 {
            let c = Double(count)
            if seen + c >= rank {
                let lower = i == 0 ? 0 : boundaries[i - 1]
                guard i < boundaries.count else { return lower }
                let width = boundaries[i] - lower  // > 0: well formed
                let offset = Double(width) * min(1, max(0, (rank - seen) / c))
                // Double(width) may round up to 2^64, which UInt64(_:) would trap on.
                return lower + (offset >= Double(width) ? width : UInt64(offset))
            }
            seen += c
        }
        return boundaries.last
    }
}
