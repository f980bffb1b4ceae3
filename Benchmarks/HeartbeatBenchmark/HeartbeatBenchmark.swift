import Agent
import ArgumentParser
import VMPulseCore

/// `make bench-heartbeat`: detection latency of a real cut and false deaths, for the fixed
/// and the phi-accrual detectors under 0 %, 5 % and 20 % loss with added jitter, in one run.
///
/// The channel is simulated with an injected clock: this machine's kernel has no netem
/// (`tc qdisc add ... netem` answers "Specified qdisc kind is unknown"), so loss and jitter
/// cannot be made in the namespaces. The detectors and the link state machine are the
/// agent's own (`ConfiguredDetector` from a `HeartbeatLinkConfig` with the agent's defaults,
/// `LinkHealth`), checked every 0.25 s as the agent checks a 1 s link. A run is `minutes` of
/// pulses (each lost with the loss probability, each late by up to `jitter`), then a cut at
/// a random point between two pulses; a death before the cut is a false one.
@main
struct HeartbeatBenchmark: ParsableCommand {
    @Option(help: "Simulated minutes per run before the cut.") var minutes = 10
    @Option(help: "Runs per case (each with its own seed).") var runs = 60
    @Option(help: "The most a pulse is late, in seconds (uniform from 0).") var jitter = 0.2

    func validate() throws {
        guard (1...1440).contains(minutes), (1...10_000).contains(runs), (0...0.9).contains(jitter) else {
            throw ValidationError("1 to 1440 minutes, 1 to 10000 runs, a jitter from 0 to 0.9 s")
        }
    }

    /// SplitMix64: a seeded generator, so that every run of the benchmark is the same.
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

    struct Outcome {
        var falseDeaths = 0
        var latencies: [Double] = []
        var missed = 0
    }

    func simulate(_ link: HeartbeatLinkConfig, loss: Double, seed: UInt64) -> (falseDeaths: Int, latency: Double?) {
        var rng = SplitMix(state: seed)
        var health = LinkHealth(detector: ConfiguredDetector(link, start: 0), recoveryPulses: link.recoveryPulses)
        let cut = Double(minutes * 60) + Double.random(in: 0..<link.interval, using: &rng)
        var arrivals: [Double] = []
        var t = link.interval
        while t < cut {
            if Double.random(in: 0..<1, using: &rng) >= loss { arrivals.append(t + Double.random(in: 0...jitter, using: &rng)) }
            t += link.interval
        }
        arrivals.sort()
        var next = 0
        var falseDeaths = 0
        let step = 0.25
        var now = step
        let end = cut + 60
        while now <= end {
            while next < arrivals.count, arrivals[next] <= now {
                _ = health.pulse(at: arrivals[next])
                next += 1
            }
            if let change = health.check(at: now), change.to == .dead {
                if now < cut { falseDeaths += 1 } else if next >= arrivals.count { return (falseDeaths, now - cut) }
            }
            if now >= cut, health.state == .dead, next >= arrivals.count { return (falseDeaths, 0) }  // dead since before the cut
            now += step
        }
        return (falseDeaths, nil)
    }

    func run() throws {
        print("simulated channel (no netem on this kernel), checks every 0.25 s, jitter up to \(jitter) s")
        print("\(runs) runs of \(minutes) min per case = \(runs * minutes / 60) h of pulses per case, then a cut")
        print("detector                     loss  false deaths  per hour  cut seen (s): median  p99     max     missed")
        func link(_ detector: HeartbeatLinkConfig.Detector, interval: Double = 1) -> HeartbeatLinkConfig {
            var l = HeartbeatLinkConfig(name: "bench", kind: .guest(vm: "x"))
            l.detector = detector
            l.interval = interval
            return l
        }
        let cases: [(String, HeartbeatLinkConfig)] = [
            ("fixed, 1 s pulses, 5 s", link(.fixed)),
            ("phi 8, 1 s pulses", link(.phi(threshold: 8, minStdDeviation: nil, acceptablePause: nil))),
            ("phi 8, 0.5 s pulses, pause 3", link(.phi(threshold: 8, minStdDeviation: nil, acceptablePause: 3), interval: 0.5)),
        ]
        for (name, config) in cases {
            for loss in [0.0, 0.05, 0.20] {
                var o = Outcome()
                for r in 0..<runs {
                    let (f, latency) = simulate(config, loss: loss, seed: UInt64(r + 1) &* 7919)
                    o.falseDeaths += f
                    if let latency { o.latencies.append(latency) } else { o.missed += 1 }
                }
                let sorted = o.latencies.sorted()
                func at(_ q: Double) -> Double { sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))] }
                let hours = Double(runs * minutes) / 60
                print(name.padding(toLength: 29, withPad: " ", startingAt: 0) + "\(Int(loss * 100)) %".padding(toLength: 6, withPad: " ", startingAt: 0)
                      + "\(o.falseDeaths)".padding(toLength: 14, withPad: " ", startingAt: 0)
                      + String(format: "%-10.2f", Double(o.falseDeaths) / hours)
                      + String(format: "%-8.2f              %-7.2f %-7.2f %d", at(0.5), at(0.99), sorted.last ?? .nan, o.missed))
            }
        }
    }
}
