/// The life of one thin disk, as a state machine that takes events and a time and
/// returns what to do. It does no I/O and reads no clock, so it is tested with an
/// injected time; the agent's `ThinDisk` performs the actions.
///
/// Extension is event-driven: the mark is set with `block-set-write-threshold`, and
/// QEMU's one-shot `BLOCK_WRITE_THRESHOLD` (or an ENOSPC pause) starts an extension.
/// One extension at a time: events while extending are absorbed. After an extension
/// the disk is read again before the next mark is set, because the guest may have
/// written past the new mark while the device grew.
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
        /// An extension or a read failed; the disk is read again at `retryAt`.
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
        /// watched node, the guest-visible capacity when known, and whether QEMU says the
        /// guest is paused out of space on it (an ENOSPC pause nobody saw the event of).
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
        /// Reading the disk or setting its mark failed (the monitor did not answer, say).
        case observationFailed(reason: String)
        /// The time asked for by `.scheduleRetry` has come.
        case retryDue
        /// The guest was paused out of space and has been resumed (`cont`).
        case resumed
    }

    public enum Action: Sendable, Equatable {
        case setMark(UInt64)
        /// Stop watching (write threshold 0).
        case clearMark
        case extend(to: UInt64)
        /// Read the device size and allocation and feed `.observed`.
        case observe
        /// Resume the VM if (and only if) it is paused on an I/O error.
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
    /// The guest is paused out of space: resume it after the next extension.
    public private(set) var pausedForSpace = false
    private var consecutiveFailures = 0

    public init(policy: ThinPolicy) {
        self.policy = policy
        maximum = policy.maximum
    }

    public mutating func handle(_ event: Event, now: Double) -> [Action] {
        switch (event, state) {
        case (.resumed, _):
            pausesRecovered += 1
            return []

        case (.unusable(let reason), _):
            state = .disabled(reason: reason)
            return []

        case (.observed(let size, let allocation, let capacity, let noSpace), .unset), (.observed(let size, let allocation, let capacity, let noSpace), .set),
             (.observed(let size, let allocation, let capacity, let noSpace), .exceeded), (.observed(let size, let allocation, let capacity, let noSpace), .backoff):
            if noSpace { pausedForSpace = true }
            return observed(physical: size, allocation: allocation, capacity: capacity, now: now)

        case (.thresholdCrossed, .set):
            return startExtension(now: now)
        case (.thresholdCrossed, .unset):
            state = .exceeded
            return [.observe]

        case (.pausedNoSpace, .disabled):
            pausedForSpace = true
            return []  // nothing to grow: the guest stays paused until an operator acts
        case (.pausedNoSpace, .set):
            pausedForSpace = true
            return startExtension(now: now)
        case (.pausedNoSpace, .unset):
            // The size is not known (or not known to be current): read it first.
            pausedForSpace = true
            state = .exceeded
            return [.observe]
        case (.pausedNoSpace, _):
            pausedForSpace = true  // extending, or reading, or waiting to retry: resume when it grew
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
            // Resume first: QEMU reports the drive out of space (io-status) until `cont`,
            // and the read that follows must not take the old pause for a new one.
            pausedForSpace = false
            return [.resumeIfPausedOnIOError, .observe]

        case (.extensionFailed(let reason), .extending):
            return fail(reason, now: now)

        case (.observationFailed(let reason), .unset), (.observationFailed(let reason), .exceeded),
             (.observationFailed(let reason), .set), (.observationFailed(let reason), .backoff):
            return fail("cannot read the disk or set its mark: \(reason)", now: now)

        case (.retryDue, .backoff(let retryAt, _)) where now >= retryAt:
            state = .unset
            return [.observe]

        default:
            return []  // a crossing while extending, a late result, a stale retry
        }
    }

    /// The VM went away (or its monitor did): start over when it is back, keeping the counts.
    /// A disk disabled for its node or size is looked at again then too.
    public mutating func reset() {
        state = .unset
        pausedForSpace = false
        consecutiveFailures = 0
    }

    private mutating func observed(physical size: UInt64, allocation: UInt64, capacity: UInt64?, now: Double) -> [Action] {
        physical = size
        if maximum == nil { maximum = policy.maximum(capacity: capacity) }
        guard let maximum else {
            state = .disabled(reason: "the disk's capacity is unknown; set max_size_mib")
            return [.clearMark]
        }
        let m = policy.mark(physical: size)
        mark = m
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
