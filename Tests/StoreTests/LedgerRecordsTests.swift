import Foundation
import GRDB
import Store
import Testing
import VMPulseCore

/// `Ledger.records(after:)`, what `Host.getBillingRecords` serves an engine.
@Suite struct LedgerRecordsTests {
    let a = DiskKey(vmUUID: "u1", disk: "drive0")
    let b = DiskKey(vmUUID: "u2", disk: "drive0")

    func usage(_ key: DiskKey, _ bytes: UInt64, period: Int64 = 0) -> PeriodUsage {
        PeriodUsage(key: key, vmName: key.vmUUID, diskPath: "/d", periodStart: period, periodEnd: period + 3600,
                    usage: BlockCounters([.writeBytes: bytes]), samples: 1)
    }

    func withLedger(_ body: (Ledger, String) throws -> Void) throws {
        let dir = "/tmp/vmpulse-records-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(try Ledger.open(path: dir + "/ledger.sqlite"), dir + "/ledger.sqlite")
    }

    @Test func aRowChangedAfterItWasReadComesAgainWithItsWholeUsage() throws {
        try withLedger { ledger, _ in
            try ledger.write(LedgerBatch(usage: [usage(a, 100), usage(b, 5)], gaps: [], cursors: [:]))
            let first = try ledger.records(afterRevision: 0, afterGap: 0, limit: 1000)
            #expect(first.usage.map(\.usage.usage[.writeBytes]) == [100, 5])
            #expect(first.usage.map(\.revision) == [1, 2])
            #expect(first.nextRevision == 2 && !first.more && !first.ledgerID.isEmpty)
            // Nothing new: an empty page that keeps the cursor.
            let none = try ledger.records(afterRevision: first.nextRevision, afterGap: first.nextGap, limit: 1000)
            #expect(none.usage.isEmpty && none.nextRevision == 2)
            // The open period grows: it comes again, with the period's total, not the delta.
            try ledger.write(LedgerBatch(usage: [usage(a, 50)], gaps: [UsageGap(key: a, vmName: "u1", from: 1, to: 2, reason: "test")], cursors: [:]))
            let again = try ledger.records(afterRevision: first.nextRevision, afterGap: first.nextGap, limit: 1000)
            #expect(again.usage.map(\.usage.key) == [a])
            #expect(again.usage.first?.usage.usage[.writeBytes] == 150)
            #expect(again.usage.first?.revision == 3)
            #expect(again.gaps.map(\.gap.reason) == ["test"])
            #expect(again.nextGap == again.gaps.first?.id)
        }
    }

    @Test func pagesGoOnWhereTheLastOneStopped() throws {
        try withLedger { ledger, _ in
            let rows = (0..<25).map { usage(DiskKey(vmUUID: "vm\($0)", disk: "d"), UInt64($0) + 1) }
            try ledger.write(LedgerBatch(usage: rows, gaps: [], cursors: [:]))
            var seen: [String] = []
            var after: Int64 = 0
            var pages = 0
            while true {
                let page = try ledger.records(afterRevision: after, afterGap: 0, limit: 10)
                seen += page.usage.map(\.usage.key.vmUUID)
                after = page.nextRevision
                pages += 1
                if !page.more { break }
                #expect(pages < 10)
            }
            #expect(pages == 3)
            #expect(seen == rows.map(\.key.vmUUID))
        }
    }

    @Test func anOlderLedgerGetsRevisionsWhenItIsMigrated() throws {
        try withLedger { ledger, path in
            try ledger.write(LedgerBatch(usage: [usage(a, 1), usage(b, 2)], gaps: [], cursors: [:]))
            // Back to a v2 ledger: no rev column, no usage_rev.
            let q = try DatabaseQueue(path: path)
            try q.write { db in
                try db.execute(sql: "DROP INDEX usage_rev")
                try db.execute(sql: "ALTER TABLE usage DROP COLUMN rev")
                try db.execute(sql: "DELETE FROM meta WHERE key IN ('usage_rev', 'ledger_id')")
                try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'v3-revisions'")
            }
            try q.close()
            let reopened = try Ledger.open(path: path)
            let page = try reopened.records(afterRevision: 0, afterGap: 0, limit: 10)
            #expect(page.usage.count == 2)
            #expect(Set(page.usage.map(\.revision)).count == 2)
            try reopened.write(LedgerBatch(usage: [usage(a, 1)], gaps: [], cursors: [:]))
            let next = try reopened.records(afterRevision: page.nextRevision, afterGap: 0, limit: 10)
            #expect(next.usage.map(\.usage.usage[.writeBytes]) == [2])
            #expect(next.usage.first.map { $0.revision > page.nextRevision } == true)
        }
    }

    @Test func aDamagedRevisionIsNamedNotTrusted() throws {
        try withLedger { ledger, path in
            try ledger.write(LedgerBatch(usage: [usage(a, 1)], gaps: [], cursors: [:]))
            let q = try DatabaseQueue(path: path)
            try q.write { db in try db.execute(sql: "UPDATE meta SET value = 'x' WHERE key = 'usage_rev'") }
            try q.close()
            #expect(throws: LedgerError.self) { try ledger.write(LedgerBatch(usage: [usage(a, 1)], gaps: [], cursors: [:])) }
            let page = try ledger.records(afterRevision: 0, afterGap: 0, limit: 10)
            #expect(page.usage.first?.usage.usage[.writeBytes] == 1)  // nothing written by the refused flush
        }
    }
}
