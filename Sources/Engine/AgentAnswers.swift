import VMPulseCore

/// The agents' answers, read without trusting them: a field of the wrong type, a count
/// that is negative or past 2^64 - 1, a period that ends before it starts is an error
/// naming the host, the VM and the field, and nothing of that answer is taken.
enum AgentAnswers {
    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    /// The most VMs an answer may list (an agent on one host runs far fewer).
    static let maxVMs = 100_000

    /// `Host.getAllVmRuntimeStats`: one report per VM UUID. A VM whose entry is an error
    /// (two VMs claim its UUID) is left out and named in `problems`.
    static func runtime(_ result: JSONValue, seen: Double) throws(Invalid) -> (vms: [VMReport], problems: [String]) {
        guard case .object(let byUUID) = result else { throw Invalid(description: "the runtime stats are \(result.kindName), not an object by VM UUID") }
        guard byUUID.count <= maxVMs else { throw Invalid(description: "the runtime stats list \(byUUID.count) VMs, over \(maxVMs)") }
        var vms: [VMReport] = [], problems: [String] = []
        for (uuid, entry) in byUUID.sorted(by: { $0.key < $1.key }) {
            guard !uuid.isEmpty, uuid.utf8.count <= 200 else { throw Invalid(description: "a VM UUID of \(uuid.utf8.count) bytes") }
            guard case .object(let o) = entry else { throw Invalid(description: "VM \(uuid): \(entry.kindName), not an object") }
            if let error = o["error"] {
                problems.append("VM \(uuid): \(error["message"]?.stringValue ?? "an error")")
                continue
            }
            guard let status = o["status"]?.stringValue, !status.isEmpty, status.utf8.count <= 100 else {
                throw Invalid(description: "VM \(uuid): status is missing or not text")
            }
            guard case .object(let h)? = o["hashes"] else { throw Invalid(description: "VM \(uuid): hashes is missing or not an object") }
            var hashes: [String: String] = [:]
            for (k, v) in h {
                guard let s = v.stringValue, s.utf8.count <= 200 else { throw Invalid(description: "VM \(uuid): hashes.\(k) is not text") }
                hashes[k] = s
            }
            var vm = VMReport(uuid: uuid, status: status, hashes: hashes, seen: seen)
            vm.cpuUser = try number(o, "cpuUser", uuid, 0...1e9)
            vm.cpuSys = try number(o, "cpuSys", uuid, 0...1e9)
            vm.memUsage = try number(o, "memUsage", uuid, 0...100)
            vm.statsAge = try number(o, "statsAge", uuid, 0...1e12)
            if let e = o["elapsedTime"], e != .null {
                guard let v = e.int64Value, v >= 0 else { throw Invalid(description: "VM \(uuid): elapsedTime is \(JSONText.serialize(e).prefix(40)), not seconds") }
                vm.elapsed = v
            }
            vms.append(vm)
        }
        return (vms, problems)
    }

    static func number(_ o: [String: JSONValue], _ key: String, _ uuid: String, _ range: ClosedRange<Double>) throws(Invalid) -> Double? {
        guard let v = o[key], v != .null else { return nil }
        guard let d = v.doubleValue, d.isFinite, range.contains(d) else {
            throw Invalid(description: "VM \(uuid): \(key) is \(JSONText.serialize(v).prefix(40)), not a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return d
    }

    /// A per-VM answer (`VM.getConfInfo` and the others): the object for each asked id that
    /// the agent answered; an id answered with an error, or not at all, is not in it.
    static func perVM(_ result: JSONValue, asked: [String]) throws(Invalid) -> [String: JSONValue] {
        guard case .object(let o) = result else { throw Invalid(description: "the answer is \(result.kindName), not an object by VM") }
        var out: [String: JSONValue] = [:]
        for id in asked {
            guard let v = o[id], case .object(let fields) = v, fields["error"] == nil else { continue }
            out[id] = v
        }
        return out
    }

    /// `Host.getBillingRecords`.
    static func billing(_ result: JSONValue) throws(Invalid) -> BillingPage {
        guard case .object(let o) = result else { throw Invalid(description: "the billing records are \(result.kindName), not an object") }
        guard let ledger = o["ledger"]?.stringValue, !ledger.isEmpty, ledger.utf8.count <= 200 else {
            throw Invalid(description: "the billing records name no ledger")
        }
        guard let next = o["next"]?.int64Value, next >= 0, let nextGap = o["nextGap"]?.int64Value, nextGap >= 0 else {
            throw Invalid(description: "the billing records' next or nextGap is not a revision of 0 or more")
        }
        guard case .bool(let more)? = o["more"] else { throw Invalid(description: "the billing records' more is not true or false") }
        guard case .array(let records)? = o["records"], case .array(let gapItems)? = o["gaps"] else {
            throw Invalid(description: "the billing records have no records or gaps list")
        }
        var rows: [BillingRow] = []
        var last: Int64 = 0
        for (i, item) in records.enumerated() {
            let row = try usage(item, i)
            guard row.revision > last, row.revision <= next else {
                throw Invalid(description: "records[\(i)]: revision \(row.revision) is not after the one before (\(last)) and up to next (\(next))")
            }
            last = row.revision
            rows.append(row)
        }
        var gaps: [BillingGap] = []
        var lastGap: Int64 = 0
        for (i, item) in gapItems.enumerated() {
            let g = try gap(item, i)
            guard g.id > lastGap, g.id <= nextGap else { throw Invalid(description: "gaps[\(i)]: id \(g.id) is out of order") }
            lastGap = g.id
            gaps.append(g)
        }
        return BillingPage(ledger: ledger, rows: rows, gaps: gaps, next: next, nextGap: nextGap, more: more)
    }

    static func text(_ o: [String: JSONValue], _ key: String, _ at: String) throws(Invalid) -> String {
        guard let s = o[key]?.stringValue, s.utf8.count <= 4096 else { throw Invalid(description: "\(at): \(key) is missing or not text") }
        return s
    }

    static func usage(_ item: JSONValue, _ i: Int) throws(Invalid) -> BillingRow {
        let at = "records[\(i)]"
        guard case .object(let o) = item else { throw Invalid(description: "\(at) is \(item.kindName), not an object") }
        guard let rev = o["rev"]?.int64Value, rev > 0 else { throw Invalid(description: "\(at): rev is not a revision of 1 or more") }
        let uuid = try text(o, "vm_uuid", at), disk = try text(o, "disk", at)
        guard !uuid.isEmpty, !disk.isEmpty else { throw Invalid(description: "\(at): an empty vm_uuid or disk") }
        guard let start = o["period_start"]?.int64Value, let end = o["period_end"]?.int64Value, start < end,
              start >= -62_167_219_200, end <= 253_402_300_800 else {
            throw Invalid(description: "\(at) (VM \(uuid), disk \(disk)): period_start and period_end are not a period between the years 0000 and 9999")
        }
        guard let samples = o["samples"]?.int64Value, samples >= 0 else { throw Invalid(description: "\(at): samples is not a count") }
        var c = BlockCounters()
        for counter in IOCounter.allCases {
            guard let v = o[counter.name], !isFloat(v), let n = v.uint64Value else {
                throw Invalid(description: "\(at) (VM \(uuid), disk \(disk)): \(counter.name) is \(o[counter.name].map { String(JSONText.serialize($0).prefix(40)) } ?? "missing"), "
                    + "not a count from 0 to 18446744073709551615")
            }
            c[counter] = n
        }
        return BillingRow(revision: rev, usage: PeriodUsage(
            key: DiskKey(vmUUID: uuid, disk: disk), vmName: try text(o, "vm_name", at), diskPath: try text(o, "disk_path", at),
            periodStart: start, periodEnd: end, usage: c, samples: Int(samples)))
    }

    static func isFloat(_ v: JSONValue) -> Bool {
        if case .double = v { return true }
        return false
    }

    static func gap(_ item: JSONValue, _ i: Int) throws(Invalid) -> BillingGap {
        let at = "gaps[\(i)]"
        guard case .object(let o) = item else { throw Invalid(description: "\(at) is \(item.kindName), not an object") }
        guard let id = o["id"]?.int64Value, id > 0 else { throw Invalid(description: "\(at): id is not 1 or more") }
        guard let from = o["from"]?.doubleValue, let to = o["to"]?.doubleValue, from.isFinite, to.isFinite else {
            throw Invalid(description: "\(at): from and to are not times")
        }
        return BillingGap(id: id, gap: UsageGap(key: DiskKey(vmUUID: try text(o, "vm_uuid", at), disk: try text(o, "disk", at)),
                                                vmName: try text(o, "vm_name", at), from: from, to: to, reason: try text(o, "reason", at)))
    }
}
