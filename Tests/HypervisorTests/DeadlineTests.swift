@testable import Hypervisor
import Testing

@Suite struct DeadlineTests {
    @Test func returnsTheFallbackOnTimeEvenIfTheWorkIgnoresCancellation() async {
        let start = ContinuousClock.now
        let value = await withDeadline(.milliseconds(200)) {
            // Work that ignores cancellation, like a blocking call would.
            let end = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < end { try? await Task.sleep(for: .milliseconds(50)) }
            return 1
        } fallback: {
            2
        }
        #expect(value == 2)
        #expect(ContinuousClock.now - start < .seconds(1))
    }

    @Test func returnsTheResultWhenInTime() async {
        let value = await withDeadline(.seconds(5)) { 1 } fallback: { 2 }
        #expect(value == 1)
    }
}
