import Logging
import ServiceLifecycle
import Store
import Synchronization
import Hypervisor
import VMPulseCore

/// The ledger's health, for `/v1/health` and the logs.
public struct LedgerStatus: Sendable, Equatable {
    public enum State: String, Sendable { case starting, ok, degraded }
    public var state: State = .starting
    /// What is wrong while degraded.
    public var problem: String?
    /// Unix seconds of the last successful write.
    public var lastWrite: Double?
    /// Billing periods with usage not yet written.
    public var pendingPeriods = 0
    /// Readings dropped from the full buffer between the sampler and the ledger writer
    /// (see `ObservationSink`), in all and per ledger key (at most 1024 keys).
    public var droppedObservations: UInt64 = 0
    public var droppedByVM: [String: UInt64] = [:]

    public init(state: State = .starting, problem: String? = nil, lastWrite: Double? = nil, pendingPeriods: Int = 0,
                droppedObservations: UInt64 = 0, droppedByVM: [String: UInt64] = [:]) {
        self.state = state
        self.problem = problem
        self.lastWrite = lastWrite
        self.pendingPeriods = pendingPeriods
        self.droppedObservations = droppedObservations
        self.droppedByVM = droppedByVM
    }
}

/// Accounts every disk reading and writes the ledger every `flush_interval`.
///
/// When the ledger cannot be opened or written (corrupt, read-only, disk full),
/// the agent goes on sampling and serving stats and reports the ledger as
/// degraded; usage stays pending in memory (and in QEMU's cumulative counters)
/// and is written when the ledger works again. A corrupt file is never touched.
///
/// Accounting and every SQLite call run on a thread of their own (`LedgerThread`),
/// never on Swift's cooperative pool. The sampler hands readings over through `sink`,
/// a buffer of `bufferSize` readings; what a full buffer drops is counted in `status`.
public final class LedgerService: Service, Sendable {
    let config: AgentConfig
    let observations: AsyncStream<Observation>
    let logger: Logger
    /// Where the sampler puts its readings.
    public let sink: ObservationSink
    let keeper: LedgerKeeper
    private let statusBox = StatusBox()

    /// The ledger's file.
    public var path: String { config.ledgerPath }

    /// The ledger's health now (never waits on the ledger).
    public var status: LedgerStatus {
        var s = statusBox.get()
        let drops = sink.drops.counts
        s.droppedObservations = drops.total
        s.droppedByVM = drops.byVM
        return s
    }

    public convenience init(config: AgentConfig, logger: Logger) {
        self.init(config: config, logger: logger, bufferSize: 100_000)
    }

    /// - Parameters:
    ///   - bufferSize: readings the buffer holds before it drops the oldest.
    ///   - now: the monotonic clock the drop messages are rate-limited by.
    init(config: AgentConfig, logger: Logger, bufferSize: Int, now: @escaping @Sendable () -> Double = MonotonicTime.now) {
        self.config = config
        self.logger = logger
        let capacity = max(1, bufferSize)
        let (stream, continuation) = AsyncStream<Observation>.makeStream(bufferingPolicy: .bufferingNewest(capacity))
        self.observations = stream
        self.sink = ObservationSink(continuation: continuation, drops: DropCounter(capacity: capacity, logger: logger, now: now))
        self.keeper = LedgerKeeper(config: config, logger: logger)
    }

    public func run() async throws {
        let keeper = self.keeper
        let status = self.statusBox
        let interval = Duration.milliseconds(Int64(config.flushInterval * 1000))
        await keeper.flush(into: status)  // open (or report why not) at once
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // Ends when the sampler ends the stream (graceful shutdown) or the task is cancelled.
                for await observation in self.observations { await keeper.observe(observation) }
            }
            group.addTask {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: interval) } catch { return }
                    await keeper.flush(into: status)
                }
            }
            await group.next()  // the stream ended: stop flushing on the timer
            group.cancelAll()
        }
        await keeper.flush(into: status)
        logger.info("ledger flushed")
        // The service group stops services one at a time, in reverse order: wait for
        // our turn, or it takes an early return for a failure.
        try? await gracefulShutdown()
    }
}

/// Owns the accounting state and the ledger connection. Runs on `LedgerThread`: its
/// SQLite calls are synchronous and must not hold up a thread of the cooperative pool.
actor LedgerKeeper {
    private nonisolated let thread = LedgerThread()
    nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }

    /// Whether the keeper's work runs on the ledger thread (for tests).
    func runsOnLedgerThread() -> Bool { thread.isCurrent }

    private let config: AgentConfig
    private let logger: Logger
    private var accounting: Accounting
    private var ledger: Ledger?
    private var lastProblem: String?
    private var lastPrune = -Double.infinity

    init(config: AgentConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        self.accounting = Accounting(periodSeconds: Int64(config.period))
    }

    func observe(_ o: Observation) {
        accounting.observe(o)
    }

    /// Opens the ledger if it is not open, writes what is pending, prunes old samples.
    func flush(into status: StatusBox) {
        do throws(LedgerError) {
            let ledger = try openLedger()
            let batch = accounting.batch()
            try ledger.write(batch)
            accounting.committed(batch)
            let now = MonotonicClock.wall()
            if now - lastPrune > 3600 {
                lastPrune = now
                try ledger.pruneSamples(before: now - config.sampleRetention)
            }
            if lastProblem != nil { logger.notice("ledger \(ledger.path) works again") }
            lastProblem = nil
            let pending = accounting.batch().usage.count
            status.set(LedgerStatus(state: .ok, problem: nil, lastWrite: now, pendingPeriods: pending))
        } catch {
            if lastProblem != error.message { logger.error("ledger degraded: \(error.message)") }
            lastProblem = error.message
            if error.kind == .corrupt || error.kind == .schema { ledger = nil }
            let pending = accounting.batch().usage.count
            var s = status.get()
            s.state = .degraded
            s.problem = error.message
            s.pendingPeriods = pending
            status.set(s)
        }
    }

    private func openLedger() throws(LedgerError) -> Ledger {
        if let ledger { return ledger }
        let opened = try Ledger.open(path: config.ledgerPath)
        if !accounting.isLoaded {
            accounting.load(cursors: try opened.cursors(), ledgerCreatedAt: try opened.createdAt())
        }
        ledger = opened
        logger.info("ledger \(opened.path) open")
        return opened
    }
}

/// Wall-clock time for the ledger.
enum MonotonicClock {
    static func wall() -> Double { MonotonicTime.wallNow() }
}

/// The ledger status behind a lock, shared by the service and its keeper.
final class StatusBox: Sendable {
    private let value = Mutex(LedgerStatus())
    func get() -> LedgerStatus { value.withLock { $0 } }
    func set(_ s: LedgerStatus) { value.withLock { $0 = s } }
}
