import Foundation
import GRDB
import VMPulseCore

/// One row of a ledger table, read without trusting it.
///
/// A ledger is a file anyone with access can edit, restore from an old backup or damage,
/// and GRDB's typed subscripts trap on a value of the wrong type. Every value is read here
/// from SQLite's own storage class and checked; a value that is not what the column holds
/// is a `LedgerError` naming the file, the table, the row (rowid, VM, disk, period) and
/// the column, so that `billing export` reports it instead of crashing.
struct LedgerRow {
    let table: String
    let row: Row
    let path: String

    /// Times the ledger holds: years 0000 to 9999, as `BillingDate` accepts.
    static let timeRange: ClosedRange<Int64> = -62_167_219_200...253_402_300_799

    /// Every counter of the row (legacy INTEGER or the TEXT digits written since schema v2).
    func counters() throws(LedgerError) -> BlockCounters {
        var c = BlockCounters()
        for counter in IOCounter.allCases { c[counter] = try self.counter(counter.name) }
        return c
    }

    /// An unsigned 64-bit counter: TEXT holding its decimal digits (no sign, no leading
    /// zero, at most 2^64 - 1), or, in a ledger not yet migrated, a non-negative INTEGER.
    func counter(_ column: String) throws(LedgerError) -> UInt64 {
        switch try value(column) {
        case let v as Int64 where v >= 0:
            return UInt64(v)
        case let s as String:
            if let v = Self.canonicalUnsigned(s) { return v }
        default:
            break
        }
        throw invalid(column, "an unsigned 64-bit count (the digits of 0 to 18446744073709551615)")
    }

    func text(_ column: String) throws(LedgerError) -> String {
        guard let s = try value(column) as? String else { throw invalid(column, "text") }
        return s
    }

    func integer(_ column: String, in range: ClosedRange<Int64>, _ what: String) throws(LedgerError) -> Int64 {
        guard let v = try value(column) as? Int64, range.contains(v) else { throw invalid(column, what) }
        return v
    }

    /// A time in Unix seconds (REAL, or INTEGER where SQLite kept a whole number so).
    func time(_ column: String) throws(LedgerError) -> Double {
        let seconds: Double
        switch try value(column) {
        case let v as Double: seconds = v
        case let v as Int64: seconds = Double(v)
        default: throw invalid(column, "a time in Unix seconds")
        }
        guard seconds.isFinite, seconds >= Double(Self.timeRange.lowerBound), seconds <= Double(Self.timeRange.upperBound) else {
            throw invalid(column, "a time in Unix seconds between the years 0000 and 9999")
        }
        return seconds
    }

    /// The raw value: Int64, Double, String, Data, or nil for NULL. A missing column is an error.
    private func value(_ column: String) throws(LedgerError) -> (any DatabaseValueConvertible)? {
        guard row.hasColumn(column) else {
            throw LedgerError(.invalidRow, "ledger \(path): \(place) has no column \(column) (not a vmpulse ledger, or damaged)")
        }
        let v: (any DatabaseValueConvertible)? = row[column]
        return v
    }

    private func invalid(_ column: String, _ expected: String) -> LedgerError {
        let found: String
        do { found = Self.describe(try value(column)) } catch { found = "nothing" }
        return LedgerError(.invalidRow, "ledger \(path): \(place): \(column) holds \(found), not \(expected). "
            + "The ledger was edited or damaged; it is left untouched: correct or delete that row with sqlite3, or restore a backup")
    }

    /// `table usage, rowid 12 (vm 'u1', disk 'drive0', period 2026-11-22T07:00:00Z)`, from whatever the row holds.
    var place: String {
        var text = "table \(table)"
        let rowid: (any DatabaseValueConvertible)? = row.hasColumn("rowid") ? row["rowid"] : nil
        if let id = rowid as? Int64 { text += ", rowid \(id)" }
        var parts: [String] = []
        for (column, label) in [("vm_uuid", "vm"), ("disk", "disk")] where row.hasColumn(column) {
            let v: (any DatabaseValueConvertible)? = row[column]
            parts.append("\(label) \((v as? String).map(Self.quoted) ?? Self.describe(v))")
        }
        if row.hasColumn("period_start") {
            let v: (any DatabaseValueConvertible)? = row["period_start"]
            if let start = v as? Int64, Self.timeRange.contains(start) {
                parts.append("period \(BillingFormat.isoTime(Double(start)))")
            } else {
                parts.append("period_start \(Self.describe(v))")
            }
        }
        return parts.isEmpty ? text : text + " (" + parts.joined(separator: ", ") + ")"
    }

    /// What a value is, for a message: `NULL`, `-5`, `1.5 (a real number)`, `'abc' (text)`, `a blob of 3 bytes`.
    static func describe(_ value: (any DatabaseValueConvertible)?) -> String {
        switch value {
        case nil: return "NULL"
        case let v as Int64: return "\(v)"
        case let v as Double: return "\(v) (a real number)"
        case let s as String: return quoted(s) + " (text)"
        case let d as Data: return "a blob of \(d.count) bytes"
        default: return "an unknown value"
        }
    }

    /// `'text'`, control characters escaped, cut after 40 characters.
    static func quoted(_ s: String) -> String {
        var shown = ""
        for (i, scalar) in s.unicodeScalars.enumerated() {
            if i == 40 { shown += "…"; break }
            shown += scalar.value < 0x20 || scalar.value == 0x7f ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
        }
        return "'\(shown)'"
    }

    /// The value of a canonical decimal text (`0`, `42`, `18446744073709551615`), else nil.
    static func canonicalUnsigned(_ s: String) -> UInt64? {
        let utf8 = s.utf8
        guard let first = utf8.first, utf8.count <= 20, first != UInt8(ascii: "0") || utf8.count == 1 else { return nil }
        var value: UInt64 = 0
        for b in utf8 {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(b - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return value
    }
}

extension LedgerRow {
    /// A row of `usage` as the period it holds.
    func periodUsage() throws(LedgerError) -> PeriodUsage {
        let start = try integer("period_start", in: Self.timeRange, "a time in Unix seconds between the years 0000 and 9999")
        let end = try integer("period_end", in: start + 1...Self.timeRange.upperBound + 1, "the end of the period, after its start (\(start))")
        return PeriodUsage(
            key: DiskKey(vmUUID: try text("vm_uuid"), disk: try text("disk")), vmName: try text("vm_name"),
            diskPath: try text("disk_path"), periodStart: start, periodEnd: end, usage: try counters(),
            samples: Int(try integer("samples", in: 0...Int64.max, "a count of samples (0 or more)")))
    }

    /// A row of `gaps` as the gap it holds.
    func usageGap() throws(LedgerError) -> UsageGap {
        UsageGap(key: DiskKey(vmUUID: try text("vm_uuid"), disk: try text("disk")), vmName: try text("vm_name"),
                 from: try time("from_time"), to: try time("to_time"), reason: try text("reason"))
    }
}
