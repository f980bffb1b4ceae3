import Hypervisor
import Logging
import Synchronization
import VMPulseCore

/// The sampler's end of the bounded buffer between the sampler and the ledger writer.
///
/// When the writer falls behind (a ledger locked by another process, a slow disk) the
/// buffer keeps the newest readings and drops the oldest. Nothing is lost by that while
/// the same QEMU is read again (its counters are cumulative, so the next reading carries
/// the dropped one's usage), but it must not happen unseen: every drop is counted (in
/// all and per VM, shown in `/v1/health` as `ledger.dropped_observations`) and logged at
/// most once a minute per cause.
public struct ObservationSink: Sendable {
    let continuation: AsyncStream<Observation>.Continuation
    let drops: DropCounter

    /// Hands a reading to the ledger writer.
    public func yield(_ observation: Observation) {
        switch continuation.yield(observation) {
        case .enqueued: break
        case .dropped(let oldest): drops.record(oldest, cause: .bufferFull)
        case .terminated: drops.record(observation, cause: .writerStopped)
        @unknown default: drops.record(observation, cause: .writerStopped)
        }
    }

    /// No more readings: the writer writes what it has and ends.
    public func finish() {
        continuation.finish()
    }
}

/// Counts and logs the readings the ledger writer never received.
final class DropCounter: Sendable {
    enum Cause: String, Sendable {
        case bufferFull = "buffer full"
        case writerStopped = "writer stopped"
    }

    /// VMs counted one by one; past that many, drops count in the total only.
    static let maxVMs = 1024

    struct Counts: Sendable, Equatable {
        var total: UInt64 = 0
        var byVM: [String: UInt64] = [:]
    }

    private struct State {
        var counts = Counts()
        var limiter = RepeatLimiter(interval: 60)
    }

    private let state = Mutex(State())
    private let capacity: Int
    private let logger: Logger
    private let now: @Sendable () -> Double

    init(capacity: Int, logger: Logger, now: @escaping @Sendable () -> Double = MonotonicTime.now) {
        self.capacity = capacity
        self.logger = logger
        self.now = now
    }

    var counts: Counts { state.withLock { $0.counts } }

    func record(_ lost: Observation, cause: Cause) {
        let time = now()
        let (total, gate) = state.withLock { s -> (UInt64, (allowed: Bool, held: Int)) in
            s.counts.total = s.counts.total == .max ? .max : s.counts.total + 1
            let vm = lost.key.vmUUID
            if let n = s.counts.byVM[vm] {
                s.counts.byVM[vm] = n == .max ? .max : n + 1
            } else if s.counts.byVM.count < Self.maxVMs {
                s.counts.byVM[vm] = 1
            }
            return (s.counts.total, s.limiter.allow(cause.rawValue, now: time))
        }
        guard gate.allowed else { return }
        let since = gate.held > 0 ? " (\(gate.held) more since the last message)" : ""
        switch cause {
        case .bufferFull:
            logger.warning("""
                ledger: dropped a reading of \(lost.vmName) (\(lost.key.vmUUID)/\(lost.key.disk)): the buffer of \(capacity) readings \
                is full, the ledger writer is behind\(since); \(total) dropped in all. Usage is not lost while the same QEMU \
                is read again (its counters are cumulative); see /v1/health ledger.dropped_observations
                """)
        case .writerStopped:
            logger.warning("ledger: dropped a reading of \(lost.vmName) (\(lost.key.vmUUID)/\(lost.key.disk)): the ledger writer has stopped\(since); \(total) dropped in all")
        }
    }
}
