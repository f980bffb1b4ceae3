import Synchronization

/// The sampler's own health, for `/metrics`: how many ticks it ran, how long VMs' passes
/// take, how many ticks found a VM still in its previous pass, and how many passes a VM's
/// monitor did not answer. Counters only grow (wrapping, never trapping).
public struct SamplerHealth: Sendable, Equatable {
    public var ticks: UInt64 = 0
    /// Monotonic seconds of the last tick; nil before the first.
    public var lastTick: Double?
    public var passes: UInt64 = 0
    public var passSeconds: Double = 0
    /// The longest pass that ended between the last two ticks.
    public var lastLongestPass: Double = 0
    /// Ticks at which a VM was still in its previous pass (its pass was skipped).
    public var skippedPasses: UInt64 = 0
    /// Passes a VM's monitor did not answer in time.
    public var unansweredPasses: UInt64 = 0

    public init() {}
}

/// Where the sampler records its health; read by any number of scrapes without waiting.
public final class SamplerHealthBook: Sendable {
    private let state = Mutex(SamplerHealth())
    private let longest = Mutex(0.0)

    public init() {}

    public var current: SamplerHealth { state.withLock { $0 } }

    func tick(at now: Double) {
        let longestPass = longest.withLock { l in defer { l = 0 }; return l }
        state.withLock { s in
            s.ticks &+= 1
            s.lastTick = now
            s.lastLongestPass = longestPass
        }
    }

    func skipped() { state.withLock { $0.skippedPasses &+= 1 } }

    func passEnded(seconds: Double, answered: Bool) {
        guard seconds.isFinite, seconds >= 0 else { return }
        longest.withLock { $0 = max($0, seconds) }
        state.withLock { s in
            s.passes &+= 1
            s.passSeconds += seconds
            if !answered { s.unansweredPasses &+= 1 }
        }
    }
}
