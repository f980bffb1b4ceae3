import Synchronization
import VMPulseCore

/// The configured detector, as one type (`LinkHealth` is generic over its detector).
public enum ConfiguredDetector: FailureDetector {
    case fixed(FixedTimeoutDetector)
    case phi(PhiAccrualDetector)

    /// The link's detector, starting at `start`. Phi's defaults scale with the interval:
    /// a minimum standard deviation of half an interval and an acceptable pause of 1.35
    /// intervals put death 5 to 6 intervals after the last pulse (FailureDetectorTests).
    public init(_ link: HeartbeatLinkConfig, start: Double) {
        switch link.detector {
        case .fixed:
            self = .fixed(FixedTimeoutDetector(timeout: link.timeout, start: start))
        case .phi(let threshold, let std, let pause):
            self = .phi(PhiAccrualDetector(threshold: threshold, minStdDeviation: std ?? link.interval * 0.5,
                                           acceptablePause: pause ?? link.interval * 1.35, firstEstimate: link.interval, start: start))
        }
    }

    public mutating func pulse(at time: Double) {
        switch self {
        case .fixed(var d):
            d.pulse(at: time)
            self = .fixed(d)
        case .phi(var d):
            d.pulse(at: time)
            self = .phi(d)
        }
    }

    public func suspicion(at time: Double) -> Double {
        switch self {
        case .fixed(let d): d.suspicion(at: time)
        case .phi(let d): d.suspicion(at: time)
        }
    }

    public var suspectLevel: Double {
        switch self {
        case .fixed(let d): d.suspectLevel
        case .phi(let d): d.suspectLevel
        }
    }

    public var deadLevel: Double {
        switch self {
        case .fixed(let d): d.deadLevel
        case .phi(let d): d.deadLevel
        }
    }
}

/// One link's health, fed by its transport (pulses) and its clock (checks); each state
/// change goes to the link's actions through `transitions`, and to the book.
final class LinkMonitor: Sendable {
    let index: Int
    let config: HeartbeatLinkConfig
    let book: HeartbeatBook
    private let health: Mutex<LinkHealth<ConfiguredDetector>>
    let transitions: AsyncStream<LinkTransition>
    private let sink: AsyncStream<LinkTransition>.Continuation

    /// State changes waiting for their actions; beyond it the oldest are kept and the
    /// rest dropped (counted in the link's status): actions are bounded by their timeouts, so this fills
    /// only if a link flaps faster than its actions end, which hysteresis prevents.
    static let backlog = 32

    init(index: Int, config: HeartbeatLinkConfig, book: HeartbeatBook, start: Double) {
        self.index = index
        self.config = config
        self.book = book
        health = Mutex(LinkHealth(detector: ConfiguredDetector(config, start: start), recoveryPulses: config.recoveryPulses))
        (transitions, sink) = AsyncStream.makeStream(of: LinkTransition.self, bufferingPolicy: .bufferingOldest(Self.backlog))
    }

    /// An accepted pulse (a verified frame, an answered probe) at monotonic `time`.
    func pulse(at time: Double) {
        let change = health.withLock { $0.pulse(at: time) }
        book.update(index) { s in
            s.pulses &+= 1
            s.lastPulse = time
            s.suspicion = 0
        }
        publish(change)
    }

    func check(at time: Double) {
        let (change, level) = health.withLock { h in (h.check(at: time), h.detector.suspicion(at: time)) }
        book.update(index) { $0.suspicion = level.isFinite ? level : Double.greatestFiniteMagnitude }
        publish(change)
    }

    var state: LinkState { health.withLock { $0.state } }

    /// Whether the transition was queued (false: the backlog was full).
    @discardableResult
    private func publish(_ change: LinkTransition?) -> Bool {
        guard let change else { return true }
        book.update(index) { s in
            s.state = change.to
            s.since = change.time
        }
        if case .dropped = sink.yield(change) {
            book.update(index) { $0.droppedTransitions &+= 1 }
            return false
        }
        return true
    }

    func finish() { sink.finish() }
}
