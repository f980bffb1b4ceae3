import Testing
import VMPulseCore

@Suite struct AccountingTests {
    let key = DiskKey(vmUUID: "u1", disk: "drive0")
    let first = QEMUInstance(id: "100@5", startedAt: 1_000)
    let second = QEMUInstance(id: "200@9", startedAt: 5_000)

    func reading(_ bytes: UInt64, at time: Double, _ instance: QEMUInstance, ops: UInt64 = 0) -> Observation {
        Observation(key: key, vmName: "vm", diskPath: "/d", instance: instance,
                    counters: BlockCounters([.writeBytes: bytes, .writeIOs: ops]), time: time)
    }

    func loaded(created: Double = 500) -> Accounting {
        var a = Accounting(periodSeconds: 3600)
        a.load(cursors: [:], ledgerCreatedAt: created)
        return a
    }

    /// Writes every pending batch and returns the total written.
    func flush(_ a: inout Accounting) -> BlockCounters {
        let b = a.batch()
        a.committed(b)
        return b.usage.reduce(.zero) { $0 + $1.usage }
    }

    @Test func aQEMUStartedAfterTheLedgerIsCountedFromZero() {
        var a = loaded()
        a.observe(reading(4096, at: 1_001, first, ops: 1))
        a.observe(reading(8192, at: 1_002, first, ops: 2))
        let total = flush(&a)
        #expect(total[.writeBytes] == 8192)
        #expect(total[.writeIOs] == 2)
        #expect(a.batch().isEmpty)
    }

    @Test func usageIsAttributedToThePeriodItWasSeenIn() {
        var a = loaded()
        a.observe(reading(100, at: 3_599, first))
        a.observe(reading(150, at: 3_601, first))
        let b = a.batch()
        #expect(b.usage.map(\.periodStart) == [0, 3600])
        #expect(b.usage.map { $0.usage[.writeBytes] } == [100, 50])
        #expect(b.usage.map(\.periodEnd) == [3600, 7200])
    }

    @Test func aRestartedQEMUAddsItsCountersAndRecordsAGap() {
        var a = loaded()
        a.observe(reading(1_000, at: 1_100, first))
        a.observe(reading(300, at: 5_010, second))
        let b = a.batch()
        #expect(b.usage.reduce(0) { $0 + $1.usage[.writeBytes] } == 1_300)
        #expect(b.gaps.count == 1)
        #expect(b.gaps.first?.from == 1_100)
        #expect(b.gaps.first?.to == 5_000)
        #expect(b.cursors[key]?.instance == second.id)
    }

    @Test func countersGoingBackwardsInOneQEMUAreNeverNegative() {
        var a = loaded()
        a.observe(reading(1_000, at: 1_100, first))
        a.observe(reading(10, at: 1_101, first))
        let b = a.batch()
        #expect(b.usage.reduce(0) { $0 + $1.usage[.writeBytes] } == 1_010)
        #expect(b.gaps.first?.reason.contains("backwards") == true)
    }

    @Test func aQEMUOlderThanTheLedgerStartsFromItsCurrentCounters() {
        var a = loaded(created: 2_000)
        a.observe(reading(1_000, at: 2_100, first))
        a.observe(reading(1_500, at: 2_101, first))
        let b = a.batch()
        #expect(b.usage.reduce(0) { $0 + $1.usage[.writeBytes] } == 500)
        #expect(b.gaps.count == 1)
    }

    @Test func resumingFromAPersistedCursorCountsNothingTwice() {
        // The agent wrote a cursor at 4096 bytes, was killed, and comes back.
        var a = Accounting(periodSeconds: 3600)
        a.observe(reading(10_000, at: 1_200, first))  // read before the ledger opened
        a.load(cursors: [key: LedgerCursor(instance: first.id, counters: BlockCounters([.writeBytes: 4096]), sampledAt: 1_100)], ledgerCreatedAt: 500)
        #expect(flush(&a)[.writeBytes] == 10_000 - 4096)
    }

    @Test func whatArrivesDuringAFlushStaysPending() {
        var a = loaded()
        a.observe(reading(100, at: 1_001, first))
        let b = a.batch()
        a.observe(reading(250, at: 1_002, first))  // arrives while the batch is being written
        a.committed(b)
        let rest = a.batch()
        #expect(rest.usage.reduce(0) { $0 + $1.usage[.writeBytes] } == 150)
        #expect(rest.cursors[key]?.counters[.writeBytes] == 250)
    }

    @Test func aFailedFlushLosesNothing() {
        var a = loaded()
        a.observe(reading(100, at: 1_001, first))
        _ = a.batch()  // the write failed: not committed
        a.observe(reading(300, at: 1_002, first))
        #expect(flush(&a)[.writeBytes] == 300)
    }

    @Test func outOfOrderReadingsAreDropped() {
        var a = loaded()
        a.observe(reading(300, at: 1_002, first))
        a.observe(reading(100, at: 1_001, first))
        #expect(flush(&a)[.writeBytes] == 300)
    }

    @Test func totalsEqualTheLastReadingWhateverTheFlushPattern() {
        var a = loaded()
        var written = BlockCounters.zero
        var bytes: UInt64 = 0
        for t in 0..<500 {
            bytes += UInt64((t * 7919) % 65_536)
            a.observe(reading(bytes, at: 1_001 + Double(t) * 13, first))
            if t % 17 == 0 { written += flush(&a) }
        }
        written += flush(&a)
        #expect(written[.writeBytes] == bytes)
    }
}

/// Identity: keys that change, processes that share a key, ids from older ledgers, sums past 2^64.
@Suite struct AccountingIdentityTests {
    let a = QEMUInstance(id: "100@5@boot1", startedAt: 1_000)
    let b = QEMUInstance(id: "200@9@boot1", startedAt: 1_010)

    func reading(_ key: String, _ bytes: UInt64, at time: Double, _ instance: QEMUInstance) -> Observation {
        Observation(key: DiskKey(vmUUID: key, disk: "drive0"), vmName: "vm", diskPath: "/d", instance: instance,
                    counters: BlockCounters([.writeBytes: bytes]), time: time)
    }

    func loaded(_ cursors: [DiskKey: LedgerCursor] = [:], created: Double = 500) -> Accounting {
        var acc = Accounting(periodSeconds: 3600)
        acc.load(cursors: cursors, ledgerCreatedAt: created)
        return acc
    }

    func billed(_ batch: LedgerBatch, key: String? = nil) -> UInt64 {
        batch.usage.filter { key == nil || $0.key.vmUUID == key }.reduce(0) { $0 + $1.usage[.writeBytes] }
    }

    /// The bug this replaces: two processes filed under one key billed each other's whole
    /// counters on every reading. Each is now billed its own counts only, even then.
    @Test func twoProcessesUnderOneKeyAreEachBilledTheirOwnCounts() {
        var acc = loaded()
        for i in 1...10 {
            acc.observe(reading("u", UInt64(i) * 1_000, at: 1_100 + Double(i), a))
            acc.observe(reading("u", UInt64(i) * 7, at: 1_100.5 + Double(i), b))
        }
        #expect(billed(acc.batch()) == 10_000 + 70)
    }

    /// A VM moved to another key (a clone appeared, then went) goes on from where its
    /// counters were: nothing lost, nothing twice.
    @Test func aVMMovedBetweenKeysIsBilledEachByteOnce() {
        var acc = loaded()
        acc.observe(reading("u", 100, at: 1_100, a))
        acc.observe(reading("u/a.sock", 250, at: 1_101, a))
        acc.observe(reading("u/a.sock", 300, at: 1_102, a))
        acc.observe(reading("u", 420, at: 1_103, a))
        let batch = acc.batch()
        #expect(billed(batch) == 420)
        #expect(billed(batch, key: "u") == 100 + 120)
        #expect(billed(batch, key: "u/a.sock") == 200)
        #expect(batch.gaps.isEmpty)
    }

    /// After an agent restart the cursors come from the ledger, one per key: the newest
    /// one of a process is where it goes on from, whatever key it is filed under now.
    @Test func anAgentRestartedAfterAKeyChangeGoesOnFromTheNewestCursor() {
        let k = { (key: String) in DiskKey(vmUUID: key, disk: "drive0") }
        let persisted = [
            k("u"): LedgerCursor(instance: a.id, counters: BlockCounters([.writeBytes: 100]), sampledAt: 1_100),  // stale
            k("u/a.sock"): LedgerCursor(instance: a.id, counters: BlockCounters([.writeBytes: 300]), sampledAt: 1_102),
            k("u/b.sock"): LedgerCursor(instance: b.id, counters: BlockCounters([.writeBytes: 50]), sampledAt: 1_102),
        ]
        var acc = loaded(persisted)
        acc.observe(reading("u", 60, at: 1_200, b))  // b now holds the plain key
        acc.observe(reading("u/a.sock", 310, at: 1_200, a))
        #expect(billed(acc.batch(), key: "u") == 10)
        #expect(billed(acc.batch(), key: "u/a.sock") == 10)
        #expect(acc.batch().gaps.isEmpty)
    }

    /// Ledgers written before the boot id was part of an instance's id hold `PID@TICKS`.
    @Test func aCursorFromAnOlderAgentIsTheSameProcessOnlyWithinItsLife() {
        let legacy = LedgerCursor(instance: "100@5", counters: BlockCounters([.writeBytes: 1_000]), sampledAt: 1_050)
        var acc = loaded([DiskKey(vmUUID: "u", disk: "drive0"): legacy])
        acc.observe(reading("u", 1_500, at: 1_100, a))
        #expect(billed(acc.batch()) == 500)
        // The same pid and start ticks after a reboot (the cursor predates the process): a new process.
        let rebooted = QEMUInstance(id: "100@5@boot2", startedAt: 2_000)
        var again = loaded([DiskKey(vmUUID: "u", disk: "drive0"): legacy])
        again.observe(reading("u", 40, at: 2_010, rebooted))
        #expect(billed(again.batch()) == 40)
        #expect(again.batch().gaps.count == 1)
    }

    /// A process that ran beside the key's previous one (it started before the ledger
    /// existed) is not billed for its whole past.
    @Test func aProcessOlderThanTheLedgerIsNotBilledForItsPast() {
        let old = QEMUInstance(id: "300@1@boot1", startedAt: 100)
        var acc = loaded()
        acc.observe(reading("u", 100, at: 1_100, a))
        acc.observe(reading("u", 5_000_000, at: 1_101, old))
        acc.observe(reading("u", 5_000_100, at: 1_102, old))
        #expect(billed(acc.batch()) == 100 + 100)
    }

    /// Counters near 2^64 from a lying peer: a period's total never wraps round.
    @Test func aPeriodTotalPast2To64IsRefusedNotWrapped() {
        var acc = loaded()
        let p1 = QEMUInstance(id: "1@1@b", startedAt: 1_000), p2 = QEMUInstance(id: "2@2@b", startedAt: 1_001)
        acc.observe(reading("u", UInt64.max - 10, at: 1_100, p1))
        acc.observe(reading("u", UInt64.max - 10, at: 1_101, p2))  // a "restart": another 2^64 - 11
        let batch = acc.batch()
        #expect(billed(batch) == UInt64.max - 10)
        #expect(batch.gaps.contains { $0.reason.contains("2^64") })
    }

    /// QEMU restarted again and again: what is followed stays bounded, and billing exact.
    @Test func aKeyWithThousandsOfRestartsStaysBounded() {
        var acc = Accounting(periodSeconds: 3600, maxFollowed: 300)
        acc.load(cursors: [:], ledgerCreatedAt: 500)
        for i in 0..<5_000 {
            let p = QEMUInstance(id: "\(i)@1@b", startedAt: 1_000 + Double(i))
            acc.observe(reading("u", 10, at: 1_000.5 + Double(i), p))
        }
        #expect(acc.followedInstanceDisks <= 300)
        #expect(billed(acc.batch()) == 50_000)
    }

    /// The reviewer's sequence: a VM that does not answer while a clone of it takes its
    /// key, then an agent restart, then the VM answers under another key. Its own cursor
    /// (kept in the ledger per process) says how far it was billed: nothing twice.
    @Test func aProcessWhoseKeyWasTakenIsNotBilledAgainAfterARestart() {
        var acc = loaded()
        acc.observe(reading("u", 1_000, at: 1_100, a))
        acc.observe(reading("u", 5, at: 1_200, b))  // the clone under the bare key meanwhile
        let persisted = acc.batch().cursors
        #expect(persisted.keys.contains(DiskKey(vmUUID: Accounting.instancePrefix + a.id, disk: "drive0")))
        var restarted = loaded(persisted)
        restarted.observe(reading("u/a.sock", 1_300, at: 1_300, a))
        #expect(billed(restarted.batch(), key: "u/a.sock") == 300)
    }

    /// An upgrade while clones run: the old agent's `PID@TICKS` cursor under the bare key
    /// is found again when the process is filed under a key of its own.
    @Test func aLegacyCursorIsFoundUnderAnotherKey() {
        let legacy = LedgerCursor(instance: "100@5", counters: BlockCounters([.writeBytes: 1_000]), sampledAt: 1_050)
        var acc = loaded([DiskKey(vmUUID: "u", disk: "drive0"): legacy])
        acc.observe(reading("u/a.sock", 1_200, at: 1_100, a))
        #expect(billed(acc.batch()) == 200)
    }

    /// A counter going back is a new generation of all counters (QEMU restarts them
    /// together), recorded as a gap naming it.
    @Test func aCounterGoingBackStartsEveryCounterAgainWithAGap() {
        var acc = loaded()
        let key = DiskKey(vmUUID: "u", disk: "drive0")
        func r(_ bytes: UInt64, _ ops: UInt64, _ t: Double) -> Observation {
            Observation(key: key, vmName: "vm", diskPath: "/d", instance: a, counters: BlockCounters([.writeBytes: bytes, .writeIOs: ops]), time: t)
        }
        acc.observe(r(1_000, 10, 1_100))
        acc.observe(r(100, 3, 1_101))
        let total = acc.batch().usage.reduce(BlockCounters()) { $0 + $1.usage }
        #expect(total[.writeBytes] == 1_100)
        #expect(total[.writeIOs] == 13)
        #expect(acc.batch().gaps.first?.reason.contains("write_bytes, write_ios") == true)
    }

    /// A wall clock that jumped past year 9999 (or is not a number) is a gap, not a trap.
    @Test func anAbsurdClockIsAGapNotATrap() {
        var acc = loaded()
        acc.observe(reading("u", 10, at: 1_100, a))
        acc.observe(reading("u", 20, at: 1e300, a))
        acc.observe(reading("u", 30, at: .nan, a))
        acc.observe(reading("u", 40, at: 1_102, a))
        let batch = acc.batch()
        #expect(billed(batch) == 40)
        #expect(batch.gaps.filter { $0.reason.contains("clock") }.count == 2)
    }
}
