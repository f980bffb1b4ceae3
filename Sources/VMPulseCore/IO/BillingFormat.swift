/// The billing export: one record per VM, disk and period, every counter of the
/// `io` group as a delta, timestamps in ISO 8601 UTC.
public enum BillingFormat {
    static let fixedColumns = ["vm_uuid", "vm_name", "disk", "disk_path", "period_start", "period_end", "samples"]

    /// `hosts`, when given (one per row: the fleet's export), comes first as a `host` column.
    public static func csv(_ rows: [PeriodUsage], hosts: [String]? = nil) -> String {
        var out = ((hosts == nil ? [] : ["host"]) + fixedColumns + IOCounter.allCases.map(\.name)).joined(separator: ",") + "\n"
        for (i, r) in rows.enumerated() {
            let fixed = [r.key.vmUUID, r.vmName, r.key.disk, r.diskPath, isoTime(Double(r.periodStart)), isoTime(Double(r.periodEnd)), String(r.samples)]
            let host = hosts.map { [i < $0.count ? $0[i] : ""] } ?? []
            out += ((host + fixed).map(csvField) + IOCounter.allCases.map { String(r.usage[$0]) }).joined(separator: ",") + "\n"
        }
        return out
    }

    public static func json(_ rows: [PeriodUsage], hosts: [String]? = nil) -> String {
        var out = "["
        for (i, r) in rows.enumerated() {
            out += i == 0 ? "\n" : ",\n"
            var fields = hosts.map { ["\"host\": \(JSONText.quoted(i < $0.count ? $0[i] : ""))"] } ?? []
            fields += [
                "\"vm_uuid\": \(JSONText.quoted(r.key.vmUUID))", "\"vm_name\": \(JSONText.quoted(r.vmName))",
                "\"disk\": \(JSONText.quoted(r.key.disk))", "\"disk_path\": \(JSONText.quoted(r.diskPath))",
                "\"period_start\": \(JSONText.quoted(isoTime(Double(r.periodStart))))", "\"period_end\": \(JSONText.quoted(isoTime(Double(r.periodEnd))))",
                "\"samples\": \(r.samples)",
            ]
            fields += IOCounter.allCases.map { "\"\($0.name)\": \(r.usage[$0])" }
            out += "  {" + fields.joined(separator: ", ") + "}"
        }
        return out + (rows.isEmpty ? "]\n" : "\n]\n")
    }

    public static func csv(_ gaps: [UsageGap]) -> String {
        var out = "vm_uuid,vm_name,disk,from,to,reason\n"
        for g in gaps {
            out += [g.key.vmUUID, g.vmName, g.key.disk, isoTime(g.from), isoTime(g.to), g.reason].map(csvField).joined(separator: ",") + "\n"
        }
        return out
    }

    public static func json(_ gaps: [UsageGap]) -> String {
        let items: [JSONValue] = gaps.map {
            ["vm_uuid": .string($0.key.vmUUID), "vm_name": .string($0.vmName), "disk": .string($0.key.disk),
             "from": .string(isoTime($0.from)), "to": .string(isoTime($0.to)), "reason": .string($0.reason)]
        }
        return JSONText.serialize(.array(items)) + "\n"
    }

    static func csvField(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingAll("\"", with: "\"\"") + "\""
    }

    /// `2026-11-22T07:00:00Z` (fractions of a second kept to the millisecond when present).
    /// Total: a time outside the years 0000 to 9999 (or not a number) is written as its
    /// seconds, never a trap (the ledger refuses such times when it reads them).
    public static func isoTime(_ unix: Double) -> String {
        guard unix.isFinite, unix >= -62_167_219_200, unix < 253_402_300_800 else { return "\(unix)s-since-1970" }
        let whole = Int64(unix.rounded(.down))
        let millis = Int64(((unix - Double(whole)) * 1000).rounded())
        var days = whole >= 0 ? whole / 86_400 : (whole - 86_399) / 86_400
        let secs = whole - days * 86_400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let doe = days - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        var text = "\(y)-\(two(m))-\(two(d))T\(two(secs / 3600)):\(two(secs % 3600 / 60)):\(two(secs % 60))"
        if millis > 0 && millis < 1000 { text += "." + String(String(millis + 1000).dropFirst()) }
        return text + "Z"
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
