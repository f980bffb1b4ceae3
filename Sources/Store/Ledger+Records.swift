import GRDB
import VMPulseCore

/// What an engine copies from a ledger, a page at a time: the usage rows changed since a
/// revision and the gaps recorded since an id, in order, with where to go on from.
public struct LedgerRecords: Sendable, Equatable {
    /// The ledger's identity (`meta.ledger_id`): a cursor holds only for the ledger it came from.
    public var ledgerID: String
    /// Each period with the revision it was last written at, oldest change first.
    public var usage: [(revision: Int64, usage: PeriodUsage)]
    public var gaps: [(id: Int64, gap: UsageGap)]
    /// The revision and gap id to ask after next time.
    public var nextRevision: Int64
    public var nextGap: Int64
    /// Whether a page limit left rows for another call.
    public var more: Bool

    public static func == (a: LedgerRecords, b: LedgerRecords) -> Bool {
        a.ledgerID == b.ledgerID && a.nextRevision == b.nextRevision && a.nextGap == b.nextGap && a.more == b.more
            && a.usage.map(\.revision) == b.usage.map(\.revision) && a.usage.map(\.usage) == b.usage.map(\.usage)
            && a.gaps.map(\.id) == b.gaps.map(\.id) && a.gaps.map(\.gap) == b.gaps.map(\.gap)
    }
}

extension Ledger {
    /// Usage rows written at a revision after `revision` and gaps with an id after `gap`,
    /// at most `limit` of each, read in one snapshot. A period is given with its whole
    /// stored usage (not a delta), so a copy that is repeated or cut short and redone
    /// writes the same values again: an engine that keys them by host, VM, disk and
    /// period never counts anything twice.
    public func records(afterRevision revision: Int64, afterGap gap: Int64, limit: Int) throws(LedgerError) -> LedgerRecords {
        let limit = max(1, limit)
        let path = self.path
        return try read { db in
            let id = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'ledger_id'") ?? ""
            let usageRows = try Row.fetchAll(db, sql: "SELECT rowid AS rowid, * FROM usage WHERE rev > ? ORDER BY rev LIMIT ?",
                                             arguments: [revision, limit + 1])
            let gapRows = try Row.fetchAll(db, sql: "SELECT rowid AS rowid, * FROM gaps WHERE id > ? ORDER BY id LIMIT ?",
                                           arguments: [gap, limit + 1])
            var usage: [(revision: Int64, usage: PeriodUsage)] = []
            for row in usageRows.prefix(limit) {
                let r = LedgerRow(table: "usage", row: row, path: path)
                usage.append((try r.integer("rev", in: 1...Int64.max, "a revision (1 or more)"), try r.periodUsage()))
            }
            var gaps: [(id: Int64, gap: UsageGap)] = []
            for row in gapRows.prefix(limit) {
                let r = LedgerRow(table: "gaps", row: row, path: path)
                gaps.append((try r.integer("id", in: 1...Int64.max, "a gap id (1 or more)"), try r.usageGap()))
            }
            return LedgerRecords(ledgerID: id, usage: usage, gaps: gaps, nextRevision: usage.last?.revision ?? revision,
                                 nextGap: gaps.last?.id ?? gap, more: usageRows.count > limit || gapRows.count > limit)
        }
    }
}
