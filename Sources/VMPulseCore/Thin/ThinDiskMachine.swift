/// The life of one thin disk, as a state machine that takes events and a time and
/// returns what to do. It does no I/O and reads no clock, so it is tested with an
/// injected time; the agent's `ThinDisk` performs the actions and reports back.
///
/// Extension is event-driven: the mark is set with `block-set-write-threshold`, and
/// QEMU's one-shot `BLOCK_WRITE_THRESHOLD` (or an ENOSPC pause) starts an extension.
/// One extension at a time: crossings while extending are absorbed, a pause while
/// extending is resumed when the extension ends. After an extension the disk is read
/// again before the next mark is set, because the guest may have written past the new
/// mark while the device grew.
public struct ThinDiskMachine: Sendable {
    public enum State: Sendable, Equatable {
        /// No mark: not bound to a running VM yet, or reading the disk.
        case unset
        /// The mark is set at this offset.
        case set(mark: UInt64)
        /// The mark was crossed (or the guest paused) before the disk's size was known:
        /// reading it, then extending.
        case exceeded
        /// Growing the device to `target` since `since` (seconds on the caller's clock).
        case extending(target: UInt64, since: Double)
        /// Something failed; the disk is read again at `retryAt`.
        case backoff(retryAt: Double, reason: String)
        /// At its maximum size, or unusable: no mark, no extension.
        case disabled(reason: String)

        public var name: String {
            switch self {
            case .unset: return "unset"
            case .set: return "set"
            case .exceeded: return "exceeded"
            case .extending: return "extending"
            case .backoff: return "backoff"
            case .disabled: return "disabled"
            }
        }
    }

    public enum Event: Sendable, Equatable {
        /// The disk as read now: the device's size, the highest offset written on the
        /// watched node, the guest-visible capacity when known, and whether the guest is
        /// paused out of space on it (an ENOSPC pause nobody saw the event of).
        case observed(physical: UInt64, allocation: UInt64, capacity: UInt64?, noSpace: Bool = false)
        /// QEMU's BLOCK_WRITE_THRESHOLD for this disk.
        case thresholdCrossed
        /// The VM paused on ENOSPC writing to this disk (BLOCK_IO_ERROR, nospace).
        case pausedNoSpace
        /// The extender finished and the device now has `physical` bytes.
        case extended(physical: UInt64)
        case extensionFailed(reason: String)
        /// The disk cannot be used (its node is unknown, say).
        case unusable(reason: String)
        /// Reading the disk, setting its mark or resuming the guest failed (the monitor
        /// did not answer, say).
        case observationFailed(reason: String)
        /// The time asked for by `.scheduleRetry` has come.
        case retryDue
        /// The guest was paused out of space and has been resumed (`cont`).
        case resumed
        /// The guest turned out not to be paused on an I/O error any more (someone else
        /// resumed it): nothing to resume.
        case notPaused
    }

    public enum Action: Sendable, Equatable {
        case setMark(UInt64)
        /// Stop watching (write threshold 0).
        case clearMark
        case extend(to: UInt64)
        /// Read the device size and allocation and feed `.observed`.
        case observe
        /// Resume the VM if (and only if) it is paused on an I/O error; feed `.resumed`,
        /// `.notPaused` or `.observationFailed`.
        case resumeIfPausedOnIOError
        /// Feed `.retryDue` at this time.
        case scheduleRetry(at: Double)
    }

    public let policy: ThinPolicy
    public private(set) var state: State = .unset
    /// The device's size as last read or extended (0 until then).
    public private(set) var physical: UInt64 = 0
    /// The most the device may grow to (nil until the policy or the capacity says).
    public private(set) var maximum: UInt64?
    public private(set) var mark: UInt64 = 0
    public private(set) var extensions = 0
    public private(set) var failures = 0
    /// Guests paused out of space and resumed after an extension.
    public private(set) var pausesRecovered = 0
    /// Seconds the last extension took, from its start to the verified new size.
    public private(set) var lastExtensionSeconds: Double?
    /// The guest is paused out of space and not resumed yet.
    public private(set) var pausedForSpace = false
    /// An extension ended since the guest paused: there is room, it only needs resuming.
    private var roomSincePause = false
    private var consecutiveFailures = 0

    public init(policy: ThinPolicy) {
        self.policy = policy
        maximum = policy.maximum
    }

    public mutating func handle(_ event: Event, now: Double) -> [Action] {
        switch (event, state) {
        case (.resumed, _):
            pausesRecovered += 1
            pausedForSpace = false
            roomSincePause = false
            return []
        case (.notPaused, _):
            pausedForSpace = false
            roomSincePause = false
            return []

        case (.unusable(let reason), _):
            state = .disabled(reason: reason)
            return []

        case (.observed(_, _, _, let noSpace), .extending):
            // The size is about to change: only note a pause, the extension's end resumes it.
            if noSpace { notePause() }
            return []
        case (.observed(let size, let allocation, let capacity, let noSpace), .unset),
             (.observed(let size, let allocation, let capacity, let noSpace), .set),
             (.observed(let size, let allocation, let capacity, let noSpace), .exceeded),
             (.observed(let size, let allocation, let capacity, let noSpace), .backoff):
            if noSpace { notePause() }
            return observed(physical: size, allocation: allocation, capacity: capacity, now: now)

        case (.thresholdCrossed, .set):
            return startExtension(now: now)
        case (.thresholdCrossed, .unset):
            state = .exceeded
            return [.observe]

        case (.pausedNoSpace, .set):
            notePause()
            return startExtension(now: now)
        case (.pausedNoSpace, .unset):
            // The size is not known (or not known to be current): read it first.
            notePause()
            state = .exceeded
            return [.observe]
        case (.pausedNoSpace, _):
            // Extending (its end makes room), reading, waiting to retry, or disabled at
            // the maximum (the guest stays paused until an operator acts).
            notePause()
            return []

        case (.extended(let size), .extending(let target, let since)):
            guard size > physical else {
                return fail("the extension reported success but the device still has \(size) bytes (asked for \(target))", now: now)
            }
            physical = size
            extensions += 1
            consecutiveFailures = 0
            lastExtensionSeconds = now - since
            state = .unset
            guard pausedForSpace else { return [.observe] }
            // Resume first: the read that follows must find the guest running, not take the
            // old pause for a new one.
            roomSincePause = true
            return [.resumeIfPausedOnIOError, .observe]

        case (.extensionFailed(let reason), .extending):
            return fail(reason, now: now)

        case (.observationFailed(let reason), .unset), (.observationFailed(let reason), .exceeded),
             (.observationFailed(let reason), .set), (.observationFailed(let reason), .backoff):
            return fail(reason, now: now)

        case (.retryDue, .backoff(let retryAt, _)):
            // A timer that woke early (a clock that jumped, say) is set again, not dropped.
            guard now >= retryAt else { return [.scheduleRetry(at: retryAt)] }
            state = .unset
            return [.observe]

        default:
            return []  // a crossing while extending, a late result
        }
    }

    /// The VM went away (or its monitor did): start over when it is back, keeping the
    /// counts. A disk disabled for its node or size is looked at again then too. An
    /// extension in flight goes on (the device is not the VM's): its end is still awaited.
    public mutating func reset() {
        if case .extending = state { return }
        state = .unset
        pausedForSpace = false
        roomSincePause = false
        consecutiveFailures = 0
    }

    private mutating func notePause() {
        guard !pausedForSpace else { return }
        pausedForSpace = true
        roomSincePause = false
    }

    private mutating func observed(physical size: UInt64, allocation: UInt64, capacity: UInt64?, now: Double) -> [Action] {
        physical = size
        // Learned again on every read: a disk resized with block_resize gets a new maximum.
        maximum = policy.maximum(capacity: capacity) ?? maximum
        guard let maximum else {
            state = .disabled(reason: "the disk's capacity is unknown; set max_size_mib")
            return [.clearMark]
        }
        let m = policy.mark(physical: size)
        mark = m
        if pausedForSpace && roomSincePause && allocation < m {
            // Grown since the pause, but resuming failed: resume, do not grow again.
            state = .set(mark: m)
            return [.setMark(m), .resumeIfPausedOnIOError]
        }
        // A paused guest needs room whatever the mark says; a crossed mark needs it soon.
        if pausedForSpace || allocation >= m { return startExtension(now: now) }
        if size >= maximum {
            state = .disabled(reason: "at its maximum size (\(maximum) bytes)")
            return [.clearMark]
        }
        if case .set(let current) = state, current == m { return [] }  // armed already (a poll)
        state = .set(mark: m)
        return [.setMark(m)]
    }

    private mutating func startExtension(now: Double) -> [Action] {
        let maximum = self.maximum ?? physical
        let target = policy.nextSize(physical: physical, maximum: maximum)
        guard target > physical else {
            state = .disabled(reason: "at its maximum size (\(maximum) bytes)" + (pausedForSpace ? "; the guest stays paused out of space" : ""))
            return [.clearMark]
        }
        state = .extending(target: target, since: now)
        return [.extend(to: target)]
    }

    /// Backs off 1, 2, 4 ... 60 seconds between attempts.
    private mutating func fail(_ reason: String, now: Double) -> [Action] {
        failures += 1
        consecutiveFailures += 1
        let delay = min(60, Double(1 << min(consecutiveFailures - 1, 6)))
        state = .backoff(retryAt: now + delay, reason: reason)
        return [.scheduleRetry(at: now + delay)]
    }
}
