import Foundation
import GRDB
import Store
import Testing
import VMPulseCore
import VMPulseTestSupport

/// `vmpulse billing` as a user runs it, on ledgers written through the real store (and
/// damaged by hand through raw SQL): exact counters, strict dates and ranges, and a
/// non-zero exit naming the row, never a trap, for a ledger that holds what it must not.
@Suite(.serialized) struct BillingExportTests {
    let key = DiskKey(vmUUID: "6c1e0b6f-3c1a-4d5e-9a43-6f2d1c0e7a55", disk: "drive0")
    /// 2026-11-22T07:00:00Z
    static let seven: Int64 = 1_795_330_800

    func dataDir() throws -> String {
        let dir = "/tmp/vmpulse-billing-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A ledger with three hourly periods from 07:00 (write_bytes 2^64 - 1, 2^63, 5) and a gap.
    func ledger() throws -> String {
        let dir = try dataDir()
        let ledger = try Ledger.open(path: dir + "/ledger.sqlite")
        let bytes: [UInt64] = [.max, 1 << 63, 5]
        try ledger.write(LedgerBatch(
            usage: bytes.enumerated().map { i, b in
                PeriodUsage(key: key, vmName: "web1", diskPath: "/d", periodStart: Self.seven + Int64(i) * 3600,
                            periodEnd: Self.seven + Int64(i + 1) * 3600, usage: BlockCounters([.writeBytes: b, .totalWriteTimeNs: .max]), samples: 2)
            },
            gaps: [UsageGap(key: key, vmName: "web1", from: Double(Self.seven) + 60, to: Double(Self.seven) + 120, reason: "a new QEMU process")],
            cursors: [:]))
        return dir
    }

    func billing(_ arguments: [String]) throws -> Spawn.Output {
        try Spawn.capture(LedgerReading.vmpulse, ["billing"] + arguments)
    }

    @Test func countersUpTo2To64Minus1AreExportedExactlyInCSVAndJSON() throws {
        let dir = try ledger()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let json = try billing(["export", "--data-dir", dir, "--format", "json"])
        #expect(json.status == 0, "\(json.stderr)")
        #expect(json.stdout.contains("\"write_bytes\": 18446744073709551615"))
        #expect(json.stdout.contains("\"write_bytes\": 9223372036854775808"))
        #expect(json.stdout.contains("\"total_write_time_ns\": 18446744073709551615"))
        let rows = try #require(try JSONParser.parse(Array(json.stdout.utf8)).arrayValue)
        #expect(rows.map { $0["write_bytes"]?.uint64Value } == [.max, 1 << 63, 5])
        let csv = try billing(["export", "--data-dir", dir])
        #expect(csv.status == 0)
        let lines = csv.stdout.split(separator: "\n")
        let column = try #require(lines.first?.split(separator: ",").firstIndex(of: "write_bytes"))
        #expect(lines.dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false)[column] } == ["18446744073709551615", "9223372036854775808", "5"])
    }

    @Test func theRangeSelectsPeriodsStartingInFromToExclusive() throws {
        let dir = try ledger()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func starts(_ extra: [String]) throws -> [String] {
            let out = try billing(["export", "--data-dir", dir, "--format", "json"] + extra)
            #expect(out.status == 0, "\(extra): \(out.stderr)")
            return try JSONParser.parse(Array(out.stdout.utf8)).arrayValue?.compactMap { $0["period_start"]?.stringValue } ?? []
        }
        #expect(try starts(["--from", "2026-11-22T08:00:00Z"]) == ["2026-11-22T08:00:00Z", "2026-11-22T09:00:00Z"])
        #expect(try starts(["--to", "2026-11-22T08:00:00Z"]) == ["2026-11-22T07:00:00Z"])
        #expect(try starts(["--from", "2026-11-22T09:00:00+02:00", "--to", "2026-11-22T09:00:00"]) == ["2026-11-22T07:00:00Z", "2026-11-22T08:00:00Z"])
        #expect(try starts(["--from", "2026-11-22", "--to", "2026-11-23"]).count == 3)
        #expect(try starts(["--from", "2026-11-23"]).isEmpty)  // a valid range with nothing in it is fine
        let gaps = try billing(["gaps", "--data-dir", dir, "--from", "2026-11-22T07:01:30Z", "--to", "2026-11-22T08:00:00Z"])
        #expect(gaps.status == 0)
        #expect(gaps.stdout.contains("a new QEMU process"))
    }

    @Test(arguments: [
        (["--from", "2026-02-30"], "--from '2026-02-30' is not a valid time: day 30 does not exist: February 2026 has 28 days"),
        (["--to", "2026-11-22T25:61:61Z"], "--to '2026-11-22T25:61:61Z' is not a valid time: hour 25 does not exist"),
        (["--from", "2026-02-29"], "February 2026 has 28 days"),
        (["--from", "2026-11-22T24:00:00Z"], "hour 24 is not accepted"),
        (["--from", "2026-12-31T23:59:60Z"], "a leap second"),
        (["--from", "yesterday"], "--from 'yesterday' is not a valid time"),
        (["--from", ""], "--from '' is not a valid time: it is empty"),
        (["--from", "2026-11-23", "--to", "2026-11-22"], "--from '2026-11-23' is not before --to '2026-11-22': an inverted range"),
        (["--from", "2026-11-22T08:00:00+01:00", "--to", "2026-11-22T07:00:00Z"], "an empty range"),
    ])
    func invalidDatesAndRangesAreErrorsNamingTheValue(arguments: [String], message: String) throws {
        let dir = try ledger()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for command in ["export", "gaps"] {
            let out = try billing([command, "--data-dir", dir] + arguments)
            #expect(out.status != 0 && out.status < 128, "\(command) \(arguments): \(out.status)")
            #expect(out.stderr.contains(message), "\(command) \(arguments): \(out.stderr)")
            #expect(out.stdout.isEmpty)
            if !message.contains("range") { #expect(out.stderr.contains("accepted: YYYY-MM-DD")) }
        }
    }

    /// The ledger's file, after `sql` by hand (with NOT NULL dropped from the schema first when asked).
    func damaged(_ sql: String, loosen: Bool = false) throws -> String {
        let dir = try ledger()
        let queue = try DatabaseQueue(path: dir + "/ledger.sqlite")
        if loosen {
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA writable_schema = ON")
                try db.execute(sql: "UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') WHERE type = 'table'")
                try db.execute(sql: "PRAGMA writable_schema = OFF")
            }
        }
        try DatabaseQueue(path: dir + "/ledger.sqlite").write { db in try db.execute(sql: sql) }
        return dir
    }

    @Test(arguments: [
        ("UPDATE usage SET write_bytes = -1 WHERE rowid = 2", false, "table usage, rowid 2", "write_bytes holds '-1' (text)"),
        ("UPDATE usage SET read_bytes = 'a lot' WHERE rowid = 3", false, "table usage, rowid 3", "read_bytes holds 'a lot' (text)"),
        ("UPDATE usage SET write_bytes = '18446744073709551616' WHERE rowid = 1", false, "period 2026-11-22T07:00:00Z", "holds '18446744073709551616' (text)"),
        ("UPDATE usage SET write_bytes = NULL WHERE rowid = 1", true, "table usage, rowid 1", "write_bytes holds NULL"),
        ("UPDATE usage SET samples = 1e30 WHERE rowid = 1", false, "table usage, rowid 1", "samples holds 1e+30 (a real number)"),
        ("UPDATE usage SET period_start = 'later' WHERE rowid = 1", false, "period_start 'later' (text)", "period_start holds 'later' (text)"),
    ])
    func aDamagedLedgerIsAnErrorNamingTheRowNeverATrap(sql: String, loosen: Bool, place: String, message: String) throws {
        let dir = try damaged(sql, loosen: loosen)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for format in ["csv", "json"] {
            let out = try billing(["export", "--data-dir", dir, "--format", format])
            #expect(out.status == 1, "\(sql): exit \(out.status) \(out.stderr)")
            #expect(out.stderr.contains(dir + "/ledger.sqlite: " + "table usage"), "\(out.stderr)")
            #expect(out.stderr.contains(place), "\(out.stderr)")
            #expect(out.stderr.contains("vm '\(key.vmUUID)'"), "\(out.stderr)")
            #expect(out.stderr.contains(message), "\(out.stderr)")
            #expect(out.stdout.isEmpty, "a partial export was printed")
        }
        // The file is read, never changed.
        let again = try billing(["export", "--data-dir", dir])
        #expect(again.status == 1)
    }

    @Test func aDamagedGapIsNamedToo() throws {
        let dir = try damaged("UPDATE gaps SET from_time = 'soon'")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = try billing(["gaps", "--data-dir", dir])
        #expect(out.status == 1)
        #expect(out.stderr.contains("table gaps, rowid 1 (vm '\(key.vmUUID)', disk 'drive0'): from_time holds 'soon' (text)"), "\(out.stderr)")
        #expect(try billing(["export", "--data-dir", dir]).status == 0)  // the usage itself is fine
    }
}
