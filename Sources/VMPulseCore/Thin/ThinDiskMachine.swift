/// The life of one thin disk, as a state machine that takes events and a time and
/// returns what to do. It does no I/O and reads no clock, so it is tested with an
/// injected time; `ThinDiskMonitor` performs the actions.
///
/// Extension is event-driven: the mark is set with `block-set-write-threshold`, and
/// QEMU's one-shot `BLOCK_WRITE_THRESHOLD` (or an ENOSPC pause) starts an extension.
/// One extension at a time: events while extending are absorbed.
public struct ThinDiskMachine: Sendable {
    public enum State: Sendable, Equatable {
        /// No mark (not yet bound to a running VM, or waiting to read the disk).
        case unset
        /// The mark is set at this offset.
        case set(mark: UInt64)
        /// The mark was crossed before the disk's size was known: reading it, then extending.
        case exceeded
        /// Growing the device to `target` since `since` (seconds on the caller's clock).
        case extending(target: UInt64, since: Double)
        /// An extension failed; the disk is read again at `retryAt`.
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
        /// The disk as read now: the device's size and the highest offset written.
        case observed(physical: UInt64, allocation: UInt64)
        /// QEMU's BLOCK_WRITE_THRESHOLD for this disk.
        case thresholdCrossed
        /// The VM paused on ENOSPC writing to this disk (BLOCK_IO_ERROR, nospace).
        case pausedNoSpace
        /// The extender finished and the device now has `physical` bytes.
        case extended(physical: UInt64)
        case extensionFailed(reason: String)
        /// The disk cannot be used (its node is unknown, say).
        case unusable(reason: String)
        /// Reading the disk failed (the monitor did not answer, say): try again later.
        case observationFailed(reason: String)
        /// Time passes (retries after a backoff).
        case tick
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
    }

    public let policy: ThinPolicy
    public private(set) var state: State = .unset
    public private(set) var physical: UInt64 = 0
    public private(set) var mark: UInt64 = 0
    public private(set) var extensions = 0
    public private(set) var failures = 0
    public private(set) var pausesRecovered = 0
    /// Seconds the last extension took, from the event to the verified new size.
    public private(set) var lastExtensionSeconds: Double?
    private var resumeAfterExtension = false
    private var consecutiveFailures = 0

    public init(policy: ThinPolicy) {
        self.policy = policy
    }

    public mutating func handle(_ event: Event, now: Double) -> [Action] {
        switch (event, state) {
        case (.unusable(let reason), _):
            state = .disabled(reason: reason)
            return []

        case (.observed(let size, let allocation), .unset), (.observed(let size, let allocation), .set),
             (.observed(let size, let allocation), .exceeded), (.observed(let size, let allocation), .backoff):
            physical = size
            if size >= policy.maximum {
                state = .disabled(reason: "at its maximum size (\(policy.maximum) bytes)")
                return [.clearMark]
            }
            let m = policy.mark(physical: size)
            mark = m
            if allocation >= m { return startExtension(now: now) }
            state = .set(mark: m)
            return [.setMark(m)]

        case (.thresholdCrossed, .set):
            return startExtension(now: now)
        case (.thresholdCrossed, .unset):
            state = .exceeded
            return [.observe]

        case (.pausedNoSpace, .disabled):
            return []  // nothing to grow: the guest stays paused until an operator acts
        case (.pausedNoSpace, .extending):
            resumeAfterExtension = true
            return []
        case (.pausedNoSpace, .backoff):
            resumeAfterExtension = true
            return []
        case (.pausedNoSpace, _):
            resumeAfterExtension = true
            return startExtension(now: now)

        case (.extended(let size), .extending(let target, let since)):
            guard size > physical else {
                return fail("the extension reported success but the device still has \(size) bytes (asked for \(target))", now: now)
            }
            physical = size
            extensions += 1
            consecutiveFailures = 0
            lastExtensionSeconds = now - since
            state = .unset
            var actions: [Action] = [.observe]
            if resumeAfterExtension {
                resumeAfterExtension = false
                pausesRecovered += 1
                actions.append(.resumeIfPausedOnIOError)
            }
            return actions

        case (.extensionFailed(let reason), .extending):
            return fail(reason, now: now)

        case (.observationFailed(let reason), .unset), (.observationFailed(let reason), .exceeded),
             (.observationFailed(let reason), .set), (.observationFailed(let reason), .backoff):
            return fail("cannot read the disk: \(reason)", now: now)

        case (.tick, .backoff(let retryAt, _)) where now >= retryAt:
            state = .unset
            return [.observe]

        default:
            return []  // a crossing while extending, a late result, a tick with nothing due
        }
    }

    /// The VM went away (or its monitor did): start over when it is back, keeping the counts.
    public mutating func reset() {
        state = .unset
        resumeAfterExtension = false
    }

    private mutating func startExtension(now: Double) -> [Action] {
        let target = policy.nextSize(physical: physical)
        guard target > physical else {
            state = .disabled(reason: "at its maximum size (\(policy.maximum) bytes)")
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
        return []
    }
}
