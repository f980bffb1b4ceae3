import Testing
import VMPulseCore

@Suite struct RepeatLimiterTests {
    @Test func aSubjectIsLetThroughOncePerIntervalWithACountOfTheRest() {
        var limiter = RepeatLimiter(interval: 60)
        #expect(limiter.allow("a", now: 0) == (true, 0))
        for t in 1...59 { #expect(limiter.allow("a", now: Double(t)).allowed == false) }
        #expect(limiter.allow("b", now: 30) == (true, 0))
        #expect(limiter.allow("a", now: 60) == (true, 59))
        #expect(limiter.allow("a", now: 200) == (true, 0))
    }

    @Test func manySubjectsStayBounded() {
        var limiter = RepeatLimiter(interval: 1)
        for i in 0..<20_000 { _ = limiter.allow("s\(i)", now: Double(i) * 0.001) }
        #expect(limiter.allow("s19999", now: 19.9995).allowed == false)
        #expect(limiter.allow("s0", now: 19.9995).allowed == true)
    }
}
