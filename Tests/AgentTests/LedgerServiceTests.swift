import Foundation
import GRDB
import Logging
import ServiceLifecycle
import Store
import Synchronization
import Testing
import VMPulseCore
@testable import API
@testable import Agent

/// The ledger writer: its SQLite calls run on a thread of their own, what a full buffer
/// drops is counted, logged (rate-limited) and shown in `/v1/health`, and shutdown writes
/// everything that reached it.
@Suite(.serialized) struct LedgerServiceTests {
    /// Log lines, kept for the test to read.
    final class Captured: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    struct CapturingHandler: LogHandler {
        let captured: Captured
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            captured.lines.withLock { $0.append("\(level): \(message)") }
        }
    }

    func config() throws -> AgentConfig {
        var c = AgentConfig()
        c.dataDirectory = "/tmp/vmpulse-ledgersvc-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: c.dataDirectory, withIntermediateDirectories: true)
        c.flushInterval = 0.2
        return c
    }

    func reading(vm: String, bytes: UInt64, at time: Double, startedAt: Double) -> Observation {
        Observation(key: DiskKey(vmUUID: vm, disk: "drive0"), vmName: "name-\(vm)", diskPath: "/d", instance: QEMUInstance(id: "1@1@b-\(vm)", startedAt: startedAt),
                    counters: BlockCounters([.writeBytes: bytes]), time: time)
    }

    @Test func dropsFromAFullBufferAreCountedPerVMLoggedOnceAMinuteAndShownInHealth() throws {
        let captured = Captured()
        let clock = Mutex<Double>(1_000)
        let config = try config()
        defer { try? FileManager.default.removeItem(atPath: config.dataDirectory) }
        let service = LedgerService(config: config, logger: Logger(label: "t") { _ in CapturingHandler(captured: captured) },
                                    bufferSize: 4, now: { clock.withLock { $0 } })
        // Nobody reads the buffer: 4 readings fit, the oldest of the rest are dropped.
        for i in 0..<10 { service.sink.yield(reading(vm: "a", bytes: UInt64(i), at: Double(i), startedAt: 0)) }
        for i in 0..<3 { service.sink.yield(reading(vm: "b", bytes: UInt64(i), at: 10 + Double(i), startedAt: 0)) }
        #expect(service.status.droppedObservations == 9)
        // The oldest go first: 6 of a's readings, then 3 more of a's to make room for b's.
        #expect(service.status.droppedByVM == ["a": 9])
        for i in 0..<4 { service.sink.yield(reading(vm: "b", bytes: 3 + UInt64(i), at: 13 + Double(i), startedAt: 0)) }
        #expect(service.status.droppedByVM == ["a": 10, "b": 3])
        #expect(service.status.droppedObservations == 13)

        // One line for all of that: at most one a minute per cause.
        var warnings = captured.all.filter { $0.contains("dropped") }
        #expect(warnings.count == 1, "\(warnings)")
        #expect(warnings.first?.contains("the buffer of 4 readings is full") == true)
        #expect(warnings.first?.contains("1 dropped in all") == true)
        clock.withLock { $0 += 30 }
        service.sink.yield(reading(vm: "b", bytes: 9, at: 20, startedAt: 0))
        #expect(captured.all.filter { $0.contains("dropped") }.count == 1)
        clock.withLock { $0 += 31 }
        service.sink.yield(reading(vm: "b", bytes: 10, at: 21, startedAt: 0))
        warnings = captured.all.filter { $0.contains("dropped") }
        #expect(warnings.count == 2)
        #expect(warnings.last?.contains("(13 more since the last message); 15 dropped in all") == true, "\(warnings)")

        // A writer that has stopped drops everything, under a cause of its own (logged at once).
        service.sink.finish()
        service.sink.yield(reading(vm: "c", bytes: 1, at: 22, startedAt: 0))
        #expect(service.status.droppedObservations == 16)
        #expect(captured.all.filter { $0.contains("the ledger writer has stopped") }.count == 1)

        // /v1/health shows them.
        let health = HealthEndpoint.answer(ledger: service.status, hostError: nil, vms: 2)
        let body = try JSONParser.parse(Array(health.body.utf8))
        #expect(body["ledger"]?["dropped_observations"]?.uint64Value == 16)
        #expect(body["ledger"]?["dropped_observations_by_vm"]?["a"]?.uint64Value == 10)
        #expect(body["ledger"]?["dropped_observations_by_vm"]?["c"]?.uint64Value == 1)
        #expect(HealthEndpoint.answer(ledger: LedgerStatus(), hostError: nil, vms: 0).body.contains("\"dropped_observations\":0"))
    }

    /// An actor on a `LedgerThread`, whose plain counter is only right if its jobs run one at a time.
    actor Counter {
        nonisolated let thread: LedgerThread
        nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }
        var value = 0
        var offThread = 0
        init(thread: LedgerThread) { self.thread = thread }
        func add() {
            let v = value
            usleep(10)
            value = v + 1
            if !thread.isCurrent { offThread += 1 }
        }
    }

    @Test(arguments: [true, false])
    func theLedgerThreadRunsJobsOneAtATimeInOrder(spawn: Bool) async {
        let counter = Counter(thread: LedgerThread(spawn: spawn))
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<50 { group.addTask { for _ in 0..<20 { await counter.add() } } }
        }
        #expect(await counter.value == 1_000)
        // With its thread, every job runs there; without one (no thread to be had), on the callers'.
        #expect(await counter.offThread == (spawn ? 0 : 1_000))
    }

    /// A ledger another process holds locked keeps the writer busy for seconds: the buffer
    /// fills and drops, the drops are counted, the sampler's side never waits, the work runs
    /// on the ledger thread, and once the lock is gone the ledger holds every byte the last
    /// reading counted (counters are cumulative) after a graceful shutdown.
    @Test func aSlowLedgerDropsReadingsCountsThemAndLosesNoUsage() async throws {
        let config = try config()
        defer { try? FileManager.default.removeItem(atPath: config.dataDirectory) }
        _ = try Ledger.open(path: config.ledgerPath)  // exists, so that it can be locked
        let createdAt = try Ledger.open(path: config.ledgerPath).createdAt()
        // Another process's transaction, held for 2.5 s on a thread of the test's own.
        let locker = try DatabaseQueue(path: config.ledgerPath)
        let locked = Atomic<Bool>(false)
        let released = Atomic<Bool>(false)
        Thread {
            try? locker.inDatabase { db in
                try db.inTransaction(.exclusive) {
                    locked.store(true, ordering: .sequentiallyConsistent)
                    usleep(2_500_000)
                    return .commit
                }
            }
            released.store(true, ordering: .sequentiallyConsistent)
        }.start()
        while !locked.load(ordering: .sequentiallyConsistent) { try await Task.sleep(for: .milliseconds(10)) }

        let captured = Captured()
        let service = LedgerService(config: config, logger: Logger(label: "t") { _ in CapturingHandler(captured: captured) }, bufferSize: 8)
        #expect(await service.keeper.runsOnLedgerThread())
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [service], logger: Logger(label: "group")))
        let running = Task { try await group.run() }

        // 200 readings of one disk while the ledger cannot be written: the sampler's side
        // never blocks (yield returns at once), and most are dropped.
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for i in 1...200 {
                service.sink.yield(reading(vm: "slow", bytes: UInt64(i) * 1_000, at: createdAt + 1 + Double(i) / 1000, startedAt: createdAt + 0.5))
            }
        }
        #expect(elapsed < .seconds(1))
        try await Task.sleep(for: .milliseconds(500))
        let dropped = service.status.droppedObservations
        #expect(dropped >= 150, "\(dropped)")
        #expect(service.status.droppedByVM["slow"] == dropped)
        #expect(captured.all.contains { $0.contains("dropped a reading of name-slow") })

        // The lock goes away (within the ledger's 5 s busy timeout); then a graceful stop.
        let stillLocked = !released.load(ordering: .sequentiallyConsistent)
        #expect(stillLocked, "the lock was held too short for the test to mean anything")
        while !released.load(ordering: .sequentiallyConsistent) { try await Task.sleep(for: .milliseconds(50)) }
        try await Task.sleep(for: .milliseconds(300))
        // Shutdown as the agent does it: the sampler ends the stream, the writer writes
        // what it has, then the group stops.
        service.sink.finish()
        for _ in 0..<100 where !captured.all.contains(where: { $0.contains("ledger flushed") }) {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(captured.all.contains { $0.contains("ledger flushed") })
        await group.triggerGracefulShutdown()
        try await running.value

        let rows = try Ledger.open(path: config.ledgerPath, readOnly: true).usage()
        #expect(rows.reduce(0) { $0 + $1.usage[.writeBytes] } == 200_000)
        #expect(service.status.state == .ok)
    }
}
