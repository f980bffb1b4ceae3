/// Lets a repeated message through at most once per `interval` per subject, and counts
/// what it held back, so that a VM whose monitor flaps (or 500 of them) cannot fill the
/// log with the same line every second. Time is passed in (seconds, any monotonic clock).
public struct RepeatLimiter: Sendable {
    public let interval: Double
    private var last: [String: (time: Double, held: Int)] = [:]

    public init(interval: Double = 60) {
        self.interval = interval
    }

    /// Whether to log `subject` now; when it is let through after some were held back,
    /// `held` says how many.
    public mutating func allow(_ subject: String, now: Double) -> (allowed: Bool, held: Int) {
        if let entry = last[subject], now - entry.time < interval {
            last[subject] = (entry.time, entry.held + 1)
            return (false, 0)
        }
        let held = last[subject]?.held ?? 0
        last[subject] = (now, 0)
        if last.count > 4096 { last = last.filter { now - $0.value.time < interval } }  // bounded
        return (true, held)
    }
}
