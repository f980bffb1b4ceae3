import Store
import Synchronization
import VMPulseCore

/// `Host.getBillingRecords`: the agent's ledger, a page at a time, for an engine that
/// copies it into a fleet store.
///
/// Read through a read-only handle of its own (WAL readers never wait on the ledger
/// writer), opened on the first call and kept. The read is SQLite's, never QEMU's, and a
/// page is bounded (`limit`, at most 10 000 rows of each kind).
public final class BillingRecords: Sendable {
    let path: String
    private let ledger = Mutex<Ledger?>(nil)

    public static let defaultLimit = 1000
    public static let maxLimit = 10_000

    public init(path: String) {
        self.path = path
    }

    func answer(_ params: RPCParams) throws(RPCError) -> JSONValue {
        let after = try params.integer("after", in: 0...Int64.max) ?? 0
        let afterGap = try params.integer("afterGap", in: 0...Int64.max) ?? 0
        let limit = try params.integer("limit", in: 1...Int64(Self.maxLimit)).map(Int.init) ?? Self.defaultLimit
        do throws(LedgerError) {
            let records = try open().records(afterRevision: after, afterGap: afterGap, limit: limit)
            return Self.json(records)
        } catch {
            throw RPCError(RPCError.ledgerUnavailable, "the ledger cannot be read: \(error)")
        }
    }

    private func open() throws(LedgerError) -> Ledger {
        if let l = ledger.withLock({ $0 }) { return l }
        let opened = try Ledger.open(path: path, readOnly: true)
        ledger.withLock { $0 = opened }
        return opened
    }

    /// The wire form: a period's fields under the names of `vmpulse billing export`, counters as
    /// JSON integers with every digit (up to 2^64 - 1).
    static func json(_ r: LedgerRecords) -> JSONValue {
        let usage: [JSONValue] = r.usage.map { rev, u in
            var o: [String: JSONValue] = [
                "rev": .int(rev), "vm_uuid": .string(u.key.vmUUID), "vm_name": .string(u.vmName), "disk": .string(u.key.disk),
                "disk_path": .string(u.diskPath), "period_start": .int(u.periodStart), "period_end": .int(u.periodEnd),
                "samples": .int(Int64(u.samples)),
            ]
            for c in IOCounter.allCases { o[c.name] = .uint(u.usage[c]) }
            return .object(o)
        }
        let gaps: [JSONValue] = r.gaps.map { id, g in
            .object(["id": .int(id), "vm_uuid": .string(g.key.vmUUID), "vm_name": .string(g.vmName), "disk": .string(g.key.disk),
                     "from": .double(g.from), "to": .double(g.to), "reason": .string(g.reason)])
        }
        return .object(["ledger": .string(r.ledgerID), "records": .array(usage), "gaps": .array(gaps), "next": .int(r.nextRevision),
                        "nextGap": .int(r.nextGap), "more": .bool(r.more)])
    }
}
