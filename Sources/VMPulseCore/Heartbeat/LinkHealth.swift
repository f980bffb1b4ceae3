/// A heartbeat link's state, as its actions see it.
public enum LinkState: String, Sendable, CaseIterable {
    case alive, suspect, dead
}

/// A change of a link's state: what its configured actions run on.
public struct LinkTransition: Sendable, Equatable {
    public var from: LinkState
    public var to: LinkState
    public var time: Double
    /// The detector's suspicion when it happened (phi, or seconds without a pulse).
    public var suspicion: Double
}

/// A link's state from its failure detector, with hysteresis. A link starts alive at its
/// set-up (a peer that never pulses goes dead, which is worth an action), goes suspect at the
/// detector's suspect level and dead at its dead level; a pulse makes a suspect link alive
/// again at once, but a dead one only after `recoveryPulses` pulses in a row each of which
/// came before the link was suspect again, so that a flapping peer (a pulse, a long gap, a
/// pulse) stays dead instead of running its actions at every flap. Pure: the caller calls
/// `pulse(at:)` for each accepted pulse and `check(at:)` on its own clock's ticks.
public struct LinkHealth<Detector: FailureDetector>: Sendable {
    public private(set) var state: LinkState = .alive
    public private(set) var detector: Detector
    public let recoveryPulses: Int
    private var goodPulses = 0

    public init(detector: Detector, recoveryPulses: Int = 3) {
        self.detector = detector
        self.recoveryPulses = max(1, recoveryPulses)
    }

    /// An accepted pulse at `time`; the transition it makes, if any.
    public mutating func pulse(at time: Double) -> LinkTransition? {
        guard time.isFinite else { return nil }
        let before = detector.suspicion(at: time)
        detector.pulse(at: time)
        switch state {
        case .alive:
            return nil
        case .suspect:
            return move(to: .alive, at: time, suspicion: before)
        case .dead:
            goodPulses = before < detector.suspectLevel ? goodPulses + 1 : 1
            guard goodPulses >= recoveryPulses else { return nil }
            goodPulses = 0
            return move(to: .alive, at: time, suspicion: before)
        }
    }

    /// The transition the time alone makes at `time` (no pulse for too long), if any.
    public mutating func check(at time: Double) -> LinkTransition? {
        guard time.isFinite else { return nil }
        let level = detector.suspicion(at: time)
        switch state {
        case .alive, .suspect:
            if level >= detector.deadLevel { return move(to: .dead, at: time, suspicion: level) }
            if state == .alive, level >= detector.suspectLevel { return move(to: .suspect, at: time, suspicion: level) }
            return nil
        case .dead:
            if level >= detector.suspectLevel { goodPulses = 0 }
            return nil
        }
    }

    private mutating func move(to next: LinkState, at time: Double, suspicion: Double) -> LinkTransition {
        let t = LinkTransition(from: state, to: next, time: time, suspicion: suspicion)
        state = next
        return t
    }
}
