import Testing
import VMPulseCore

@Suite struct IOSeriesTests {
    func sample(_ t: Double, writes: UInt64, bytes: UInt64, timeNs: UInt64, histogram: [UInt64]? = nil) -> IOSample {
        var s = IOSample(time: t, counters: BlockCounters([.writeIOs: writes, .writeBytes: bytes, .totalWriteTimeNs: timeNs]))
        if let bins = histogram { s.histograms[.write] = LatencyHistogram(boundaries: [1_000_000, 10_000_000], bins: bins) }
        return s
    }

    @Test func eachPointIsTheRatesBetweenTwoSamples() throws {
        let points = IOSeries.points([
            sample(10, writes: 0, bytes: 0, timeNs: 0, histogram: [0, 0, 0]),
            sample(10.5, writes: 50, bytes: 50 << 20, timeNs: 100_000_000, histogram: [0, 50, 0]),
            sample(11.5, writes: 50, bytes: 50 << 20, timeNs: 100_000_000, histogram: [0, 50, 0]),
        ])
        #expect(points.count == 2)
        let busy = try #require(points.first)
        #expect(busy.time == 10.5 && busy.seconds == 0.5)
        #expect(busy.bytesPerSecond[.write] == Double(100 << 20))
        #expect(busy.opsPerSecond[.write] == 100)
        #expect(busy.latencyAvgNs[.write] == 2_000_000)
        #expect(busy.latencyP99Ns[.write] != nil)
        #expect(abs(busy.queueDepth - 0.2) < 1e-9, "0.1 s in flight over 0.5 s")
        let idle = points[1]
        #expect(idle.bytesPerSecond[.write] == 0 && idle.latencyAvgNs[.write] == nil, "no write: no latency, not zero")
        #expect(idle.latencyP99Ns[.write] == nil, "an empty histogram delta has no quantile")
    }

    /// A lying peer: counters near 2^64, a pair that goes back, and two samples at one time.
    @Test func countersNearTheTopAPairThatGoesBackAndNoTimeBetweenAreSafe() {
        let top = UInt64.max - 10
        let points = IOSeries.points([
            sample(1, writes: top, bytes: top, timeNs: top),
            sample(2, writes: UInt64.max, bytes: UInt64.max, timeNs: UInt64.max),
            sample(2, writes: UInt64.max, bytes: UInt64.max, timeNs: UInt64.max),
            sample(3, writes: 5, bytes: 5, timeNs: 5),
        ])
        #expect(points.count == 1, "only the first pair is a real interval: \(points)")
        #expect(points.first?.bytesPerSecond[.write] == 10)
        #expect(IOSeries.points([]).isEmpty && IOSeries.points([sample(1, writes: 0, bytes: 0, timeNs: 0)]).isEmpty)
    }

    @Test func theHistoryIsOneSampleAMinuteThenEverySecondOfTheLastMinutes() {
        var w = IOWindows(recentSeconds: 75)
        for t in 0...600 { w.record(sample(Double(t), writes: UInt64(t), bytes: UInt64(t) * 4096, timeNs: UInt64(t) * 1000)) }
        let history = w.history
        let times = history.map(\.time)
        #expect(times == times.sorted() && Set(times).count == times.count, "oldest first, each once")
        #expect(times.first == 0, "the hour's first sample")
        #expect(times.filter { $0 < 524 } == [0, 60, 120, 180, 240, 300, 360, 420, 480], "one a minute before the recent ones: \(times.prefix(12))")
        #expect(times.suffix(76) == ArraySlice((525...600).map(Double.init)), "every second of the last 75")
        #expect(IOSeries.points(history).count == history.count - 1)
    }
}
