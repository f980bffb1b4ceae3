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
