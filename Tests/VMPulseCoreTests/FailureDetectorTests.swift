import Testing
import VMPulseCore

/// The failure detectors and the link state machine, on an injected clock.
@Suite struct FailureDetectorTests {
    /// A seeded generator, so that a lossy channel is the same on every run.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Drives a link: pulses every `interval` (each lost with probability `loss`, each late by
    /// up to `jitter`) until `cut`, none after; checks every 0.1 s until `end`. The transitions.
    static func run<D: FailureDetector>(_ link: inout LinkHealth<D>, interval: Double = 1, loss: Double, jitter: Double,
                                        cut: Double, end: Double, seed: UInt64 = 7) -> [LinkTransition] {
        var rng = SplitMix(state: seed)
        var pulses: [Double] = []
        var t = interval
        while t < cut {
            if Double.random(in: 0..<1, using: &rng) >= loss { pulses.append(t + Double.random(in: 0...jitter, using: &rng)) }
            t += interval
        }
        pulses.sort()
        var out: [LinkTransition] = []
        var i = 0
        var now = 0.0
        while now <= end {
            while i < pulses.count, pulses[i] <= now {
                if let tr = link.pulse(at: pulses[i]) { out.append(tr) }
                i += 1
            }
            if let tr = link.check(at: now) { out.append(tr) }
            now += 0.1
        }
        return out
    }

    @Test func theFixedDetectorIsDeadWithinTheTimeoutPlusAnInterval() {
        var link = LinkHealth(detector: FixedTimeoutDetector(timeout: 5, start: 0))
        let transitions = Self.run(&link, loss: 0, jitter: 0, cut: 10.5, end: 30)
        #expect(transitions.map(\.to) == [.suspect, .dead], "\(transitions)")
        let dead = transitions.last?.time ?? 0
        #expect(dead >= 15 - 0.01 && dead <= 10 + 5 + 1, "the last pulse at 10, dead at \(dead)")
    }

    @Test func aPeerThatNeverPulsesGoesDead() {
        var fixed = LinkHealth(detector: FixedTimeoutDetector(timeout: 5, start: 100))
        #expect(fixed.check(at: 102.4) == nil)
        #expect(fixed.check(at: 102.5)?.to == .suspect)
        #expect(fixed.check(at: 105)?.to == .dead)
        var phi = LinkHealth(detector: PhiAccrualDetector(start: 0))
        #expect(Self.run(&phi, loss: 0, jitter: 0, cut: 0, end: 30).map(\.to) == [.suspect, .dead])
    }

    /// Under 20 % loss, the only deaths before the cut come after five seconds without a pulse
    /// (four lost in a row), which no detector that sees a cut within 6 s can tell from one;
    /// the cut is seen within 6 s of the last pulse. Twenty seeded half-hours.
    @Test func phiAccrualUnderTwentyPercentLossDiesOnlyOfLongSilencesAndSeesACutWithinSixSeconds() {
        var early = 0
        for seed in UInt64(1)...20 {
            var link = LinkHealth(detector: PhiAccrualDetector(threshold: 8, minStdDeviation: 0.5, acceptablePause: 1.35, firstEstimate: 1, start: 0))
            var pulses: [Double] = []
            var rng = SplitMix(state: seed)
            var t = 1.0
            while t < 1800 {
                if Double.random(in: 0..<1, using: &rng) >= 0.2 { pulses.append(t + Double.random(in: 0...0.1, using: &rng)) }
                t += 1
            }
            var transitions: [LinkTransition] = []
            var i = 0
            var now = 0.0
            while now <= 1830 {
                while i < pulses.count, pulses[i] <= now {
                    if let tr = link.pulse(at: pulses[i]) { transitions.append(tr) }
                    i += 1
                }
                if let tr = link.check(at: now) { transitions.append(tr) }
                now += 0.1
            }
            for death in transitions where death.to == .dead {
                let lastPulse = pulses.last { $0 < death.time } ?? 0
                #expect(death.time - lastPulse >= 4.9, "seed \(seed): dead at \(death.time), \(death.time - lastPulse) s after a pulse")
                #expect(death.time - lastPulse <= 6, "seed \(seed): seen within 6 s of the last pulse")
                if death.time < 1799 { early += 1 }
            }
            #expect(transitions.last?.to == .dead && (transitions.last?.time ?? 0) > 1799, "seed \(seed): the cut is seen")
        }
        #expect(early <= 20, "false deaths are rare: \(early) in 20 half-hours")
    }

    @Test func aDeadLinkNeedsPulsesInARowAndAFlappingPeerStaysDead() {
        var link = LinkHealth(detector: FixedTimeoutDetector(timeout: 5, start: 0), recoveryPulses: 3)
        #expect(link.check(at: 6)?.to == .dead)
        // A pulse, a gap longer than the suspect level, again and again: never alive.
        var t = 6.0
        for _ in 0..<20 {
            t += 3
            #expect(link.pulse(at: t) == nil)
            _ = link.check(at: t + 2.9)
        }
        #expect(link.state == .dead)
        // Three pulses a second apart: alive, once.
        #expect(link.pulse(at: t + 4) == nil)
        #expect(link.pulse(at: t + 5) == nil)
        #expect(link.pulse(at: t + 6)?.to == .alive)
        #expect(link.pulse(at: t + 7) == nil)
    }

    @Test func aSuspectLinkIsAliveAgainAtTheNextPulse() {
        var link = LinkHealth(detector: FixedTimeoutDetector(timeout: 5, start: 0))
        #expect(link.check(at: 3)?.to == .suspect)
        #expect(link.pulse(at: 3.5)?.to == .alive)
    }

    /// A lying or broken clock: times that go back, NaN, infinities, values near the top.
    @Test func badTimesNeitherTrapNorRevive() {
        var link = LinkHealth(detector: PhiAccrualDetector(start: 10))
        for bad in [Double.nan, .infinity, -.infinity, -1e308, 9] {
            #expect(link.pulse(at: bad) == nil)
            #expect(link.check(at: bad) == nil)
        }
        #expect(link.check(at: 1e300)?.to == .dead, "a clock far ahead: dead, no trap")
        var phi = PhiAccrualDetector(start: 0)
        phi.pulse(at: 1)
        phi.pulse(at: 0.5)  // from the past
        #expect(phi.mean > 0 && phi.standardDeviation >= phi.minStdDeviation)
        #expect(phi.suspicion(at: 1) == 0 || phi.suspicion(at: 1) < 1)
        #expect(phi.suspicion(at: .greatestFiniteMagnitude).isFinite)
        var fixed = FixedTimeoutDetector(timeout: -3, start: 0)
        fixed.pulse(at: .nan)
        #expect(fixed.timeout > 0 && fixed.suspicion(at: 1) == 1)
    }

    @Test func phiGrowsWithSilenceAndTheHistoryIsBounded() {
        var phi = PhiAccrualDetector(maxSamples: 10, start: 0)
        for t in 1...100 { phi.pulse(at: Double(t)) }
        #expect(abs(phi.mean - 1) < 1e-9, "the last 10 intervals only: \(phi.mean)")
        let levels = stride(from: 100.5, through: 104, by: 0.5).map { phi.suspicion(at: $0) }
        #expect(levels == levels.sorted(), "\(levels)")
        #expect(levels.last ?? 0 >= phi.threshold)
    }
}
