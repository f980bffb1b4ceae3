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

    /// An estimate of the `fraction` quantile (0.5 for the median) in ns, interpolating
    /// linearly inside the bin it falls in. In the last bin, which has no upper bound, the
    /// estimate is that bin's lower boundary: the true value is at least that. Nil with no operations.
    public func quantile(_ fraction: Double) -> UInt64? {
        let total = bins.reduce(0, &+)
        guard total > 0, bins.count == boundaries.count + 1 else { return nil }
        let rank = max(1, (Double(total) * fraction).rounded(.up))
        var seen: UInt64 = 0
        for (i, count) in bins.enumerated() {
            if count > 0 && Double(seen + count) >= rank {
                let lower = i == 0 ? 0 : boundaries[i - 1]
                guard i < boundaries.count else { return lower }
                let upper = boundaries[i]
                let within = (rank - Double(seen)) / Double(count)
                return lower + UInt64(Double(upper - lower) * within)
            }
            seen += count
        }
        return boundaries.last
    }
}
