import Glibc

/// How sure a failure detector is that a peer is gone, from the pulses it saw, at a time
/// (seconds on a monotonic clock the caller owns, so tests drive it with an injected clock).
/// Pure: no timers, no I/O.
public protocol FailureDetector: Sendable {
    /// A pulse arrived at `time`.
    mutating func pulse(at time: Double)
    /// The suspicion at `time`: 0 right after a pulse, growing while none comes.
    /// `suspectLevel` and `deadLevel` are the levels at which a link is suspect and dead.
    func suspicion(at time: Double) -> Double
    var suspectLevel: Double { get }
    var deadLevel: Double { get }
}

/// The proposal's detector: dead when no pulse came for `timeout` seconds, suspect from
/// half of it. Its suspicion is the seconds since the last pulse (or since it started).
public struct FixedTimeoutDetector: FailureDetector {
    public let timeout: Double
    private var last: Double

    /// `start`: when the link was set up (a peer that never pulses is dead `timeout` after it).
    public init(timeout: Double = 5, start: Double) {
        self.timeout = max(0.001, timeout)
        last = start
    }

    public mutating func pulse(at time: Double) {
        if time.isFinite, time > last { last = time }
    }

    public func suspicion(at time: Double) -> Double { time.isFinite && time > last ? time - last : 0 }
    public var suspectLevel: Double { timeout / 2 }
    public var deadLevel: Double { timeout }
}

/// The phi accrual detector (Hayashibara et al.; configured as Akka configures it): phi is
/// -log10 of the probability that a pulse is still to come this late, given the mean and
/// standard deviation of the last `maxSamples` intervals between pulses. Dead at
/// `threshold` (8: one chance in 10^8 that the peer is only late), suspect at half of it.
/// `minStdDeviation` keeps a very regular peer from being declared dead for one late pulse;
/// `acceptablePause` is added to the mean, for pauses that are no failure (a GC, a migration).
public struct PhiAccrualDetector: FailureDetector {
    public let threshold: Double
    public let minStdDeviation: Double
    public let acceptablePause: Double
    public let maxSamples: Int
    private var intervals: [Double] = []
    private var next = 0
    private var sum = 0.0
    private var squares = 0.0
    private var last: Double

    /// `firstEstimate`: the interval expected before any was seen (the link's pulse interval);
    /// the history starts as two intervals a quarter of it either side, as Akka's does.
    public init(threshold: Double = 8, minStdDeviation: Double = 0.1, acceptablePause: Double = 0, maxSamples: Int = 1000,
                firstEstimate: Double = 1, start: Double) {
        self.threshold = max(0.1, threshold)
        self.minStdDeviation = max(0.001, minStdDeviation)
        self.acceptablePause = max(0, acceptablePause)
        self.maxSamples = max(2, maxSamples)
        last = start
        let estimate = max(0.001, firstEstimate)
        add(estimate * 0.75)
        add(estimate * 1.25)
    }

    private mutating func add(_ interval: Double) {
        if intervals.count < maxSamples {
            intervals.append(interval)
        } else {
            let old = intervals[next]
            sum -= old
            squares -= old * old
            intervals[next] = interval
            next = (next + 1) % maxSamples
        }
        sum += interval
        squares += interval * interval
    }

    public mutating func pulse(at time: Double) {
        guard time.isFinite, time > last else { return }  // a pulse from the past (a clock step back) says nothing new
        add(time - last)
        last = time
    }

    public var mean: Double { sum / Double(intervals.count) }
    public var standardDeviation: Double {
        let m = mean
        return max(minStdDeviation, (max(0, squares / Double(intervals.count) - m * m)).squareRoot())
    }

    /// phi, with the logistic approximation of the normal distribution's tail that Akka uses
    /// (no erf needed, and no overflow: the exponent is bounded).
    public func suspicion(at time: Double) -> Double {
        guard time.isFinite, time > last else { return 0 }
        let elapsed = time - last
        let y = (elapsed - (mean + acceptablePause)) / standardDeviation
        let e = exp(-y * (1.5976 + 0.070566 * y * y))
        let phi = elapsed > mean + acceptablePause ? -log10(e / (1 + e)) : -log10(1 - 1 / (1 + e))
        return phi.isFinite ? max(0, phi) : (elapsed > mean ? .greatestFiniteMagnitude : 0)
    }

    public var suspectLevel: Double { threshold / 2 }
    public var deadLevel: Double { threshold }
}
