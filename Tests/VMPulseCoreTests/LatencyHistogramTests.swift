import Testing
import VMPulseCore

/// Histograms another monitor may set (QEMU accepts any boundaries from any client).
@Suite struct LatencyHistogramTests {
    @Test func aWellFormedHistogramGivesItsQuantiles() {
        let h = LatencyHistogram(boundaries: [100, 200], bins: [0, 10, 0])
        #expect(h.quantile(0.5) == 150)
        #expect(h.quantile(1) == 200)
    }

    @Test func decreasingOrRepeatedBoundariesGiveNoQuantile() {
        #expect(LatencyHistogram(boundaries: [200, 100], bins: [1, 1, 1]).quantile(0.5) == nil)
        #expect(LatencyHistogram(boundaries: [100, 100], bins: [1, 1, 1]).quantile(0.99) == nil)
        #expect(LatencyHistogram(boundaries: [100], bins: [1]).quantile(0.5) == nil)
    }

    @Test func boundariesNear2To64DoNotTrap() {
        let top = UInt64.max
        let h = LatencyHistogram(boundaries: [1, top - 1, top], bins: [0, 5, 5, 5])
        #expect(h.quantile(0.5).map { $0 >= 1 && $0 <= top - 1 } == true)
        #expect(h.quantile(0.99) == top)
        let wide = LatencyHistogram(boundaries: [top], bins: [3, 0])
        #expect(wide.quantile(1) == top)
    }

    @Test func binsSummingPast2To64DoNotTrap() {
        let h = LatencyHistogram(boundaries: [10, 20], bins: [UInt64.max, UInt64.max, UInt64.max])
        #expect(h.quantile(0.5) != nil)
        #expect(LatencyHistogram(boundaries: [10], bins: [1, 1]).quantile(.nan) == nil)
    }
}
