import Testing
import VMPulseCore

@Suite struct IOWindowsTests {
    /// A disk doing `ops` writes per second, each taking `latencyNs`, sampled every second.
    func steady(seconds: Int, ops: UInt64, latencyNs: UInt64, start: Double = 100) -> [IOSample] {
        (0...seconds).map { t in
            IOSample(time: start + Double(t), counters: BlockCounters([
                .writeIOs: ops * UInt64(t), .totalWriteTimeNs: ops * UInt64(t) * latencyNs, .writeBytes: ops * UInt64(t) * 4096,
            ]))
        }
    }

    @Test func latencyIsTimeOverOpsAndQueueDepthIsTimeOverWallTime() throws {
        var w = IOWindows()
        for s in steady(seconds: 120, ops: 100, latencyNs: 2_000_000) { w.record(s) }
        let one = try #require(w.figures(window: 1))
        #expect(one.seconds == 1)
        #expect(one.latencyAvgNs[.write] == 2_000_000)
        // 100 ops/s x 2 ms = 0.2 s in flight per second.
        #expect(abs((one.queueDepthAvg[.write] ?? 0) - 0.2) < 1e-9)
        #expect(one.latencyAvgNs[.read] == nil)  // no reads: no read latency
        #expect(one.queueDepthAvg[.read] == 0)
        let minute = try #require(w.figures(window: 60))
        #expect(minute.seconds == 60)
        #expect(minute.latencyAvgNs[.write] == 2_000_000)
        // Only two minutes of history: the hour window covers what there is.
        let hour = try #require(w.figures(window: 3600))
        #expect(hour.seconds == 120)
    }

    @Test func windowsSeeOnlyTheirOwnSpan() throws {
        var w = IOWindows()
        // 60 s at 1 ms, then 1 s at 9 ms.
        var samples = steady(seconds: 60, ops: 10, latencyNs: 1_000_000)
        let last = samples[samples.count - 1].counters
        var next = last
        next[.writeIOs] += 10
        next[.totalWriteTimeNs] += 10 * 9_000_000
        samples.append(IOSample(time: 161, counters: next))
        for s in samples { w.record(s) }
        #expect(try #require(w.figures(window: 1)).latencyAvgNs[.write] == 9_000_000)
        let minute = try #require(w.figures(window: 60)).latencyAvgNs[.write] ?? 0
        #expect(abs(minute - (59 * 1_000_000 + 9_000_000) / 60) < 1)
    }

    @Test func historyIsBoundedOverAnHour() {
        var w = IOWindows()
        for s in steady(seconds: 7200, ops: 1, latencyNs: 1) { w.record(s) }
        #expect(w.heldSamples < 160)
        #expect(w.figures(window: 3600)?.seconds == 3600)
    }

    @Test func countersGoingBackwardsRestartTheHistory() throws {
        var w = IOWindows()
        for s in steady(seconds: 10, ops: 5, latencyNs: 1000) { w.record(s) }
        w.record(IOSample(time: 111, counters: BlockCounters([.writeIOs: 1, .totalWriteTimeNs: 50])))
        #expect(w.figures(window: 1) == nil)
        w.record(IOSample(time: 112, counters: BlockCounters([.writeIOs: 3, .totalWriteTimeNs: 250])))
        #expect(try #require(w.figures(window: 1)).latencyAvgNs[.write] == 100)
    }

    @Test func percentilesComeFromHistogramDeltas() throws {
        let bounds: [UInt64] = [1000, 2000, 4000]
        var w = IOWindows()
        w.record(IOSample(time: 0, counters: .zero, histograms: [.read: LatencyHistogram(boundaries: bounds, bins: [5, 0, 0, 0])]))
        // 100 new reads: 50 in [1000, 2000), 49 in [2000, 4000), 1 above 4000.
        w.record(IOSample(time: 1, counters: BlockCounters([.readIOs: 100]),
                          histograms: [.read: LatencyHistogram(boundaries: bounds, bins: [5, 50, 49, 1])]))
        let f = try #require(w.figures(window: 1))
        #expect(f.latencyP50Ns[.read] == 2000)
        #expect(f.latencyP99Ns[.read] == 4000)
    }

    @Test func quantilesInterpolateWithinABin() {
        let h = LatencyHistogram(boundaries: [100, 200], bins: [0, 10, 0])
        #expect(h.quantile(0.5) == 150)
        #expect(h.quantile(1.0) == 200)
        #expect(LatencyHistogram(boundaries: [100], bins: [0, 0]).quantile(0.5) == nil)
        #expect(LatencyHistogram(boundaries: [100], bins: [1, 1]).delta(since: LatencyHistogram(boundaries: [50], bins: [0, 0])) == nil)
        #expect(LatencyHistogram(boundaries: [100], bins: [1, 1]).delta(since: LatencyHistogram(boundaries: [100], bins: [2, 0])) == nil)
    }
}
