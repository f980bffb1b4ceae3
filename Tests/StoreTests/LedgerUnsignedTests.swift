import Foundation
import GRDB
import Store
import Testing
import VMPulseCore

/// Counters are unsigned 64-bit end to end: stored exactly up to 2^64 - 1, migrated from
/// the v1 schema (signed INTEGER), exported exactly, added with checked arithmetic, and
/// a row that holds anything else is a typed error naming it, never a trap.
@Suite(.serialized) struct LedgerUnsignedTests {
    static let big: [UInt64] = [0, 1, (1 << 53) + 1, (1 << 63) - 1, 1 << 63, (1 << 63) + 1, .max - 1, .max]
    let key = DiskKey(vmUUID: "u1", disk: "drive0")

    func tempPath() throws -> String {
        let dir = "/tmp/vmpulse-unsigned-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/ledger.sqlite"
    }

    func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
    }

    /// Counters where each counter holds one of `big`, in turn.
    func counters(shift: Int = 0) -> BlockCounters {
        var c = BlockCounters()
        for (i, counter) in IOCounter.allCases.enumerated() { c[counter] = Self.big[(i + shift) % Self.big.count] }
        return c
    }

    func usage(_ c: BlockCounters, period: Int64 = 3600, samples: Int = 1) -> PeriodUsage {
        PeriodUsage(key: key, vmName: "vm", diskPath: "/d", periodStart: period, periodEnd: period + 3600, usage: c, samples: samples)
    }

    @Test func everyCounterUpTo2To64Minus1IsStoredAndExportedExactly() throws {
        let path = try tempPath()
        defer { remove(path) }
        let ledger = try Ledger.open(path: path)
        for shift in 0..<Self.big.count {
            try ledger.write(LedgerBatch(
                usage: [usage(counters(shift: shift), period: Int64(shift + 1) * 3600)], gaps: [],
                cursors: [key: LedgerCursor(instance: "1@2@b", counters: counters(shift: shift), sampledAt: Double(shift) + 0.5)]))
            #expect(try ledger.cursors()[key]?.counters == counters(shift: shift))
        }
        let rows = try Ledger.open(path: path, readOnly: true).usage()
        #expect(rows.map(\.usage) == (0..<Self.big.count).map { counters(shift: $0) })

        // CSV and JSON print the full unsigned value as digits (JSON numbers past 2^53 too).
        let csv = BillingFormat.csv(rows)
        let json = BillingFormat.json(rows)
        #expect(csv.contains(",18446744073709551615"))
        #expect(csv.contains(",9223372036854775808"))
        #expect(json.contains("\"write_bytes\": 18446744073709551615") || json.contains(": 18446744073709551615"))
        #expect(json.contains(": 9007199254740993"))  // 2^53 + 1: a double would print ...992
        let parsed = try #require(try JSONParser.parse(Array(json.utf8)).arrayValue)
        for (i, row) in parsed.enumerated() {
            for c in IOCounter.allCases { #expect(row[c.name]?.uint64Value == rows[i].usage[c], "\(c.name)") }
        }
        let lines = csv.split(separator: "\n").dropFirst()
        for (i, line) in lines.enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).suffix(IOCounter.allCases.count)
            #expect(fields.map { UInt64($0) } == IOCounter.allCases.map { rows[i].usage[$0] })
        }
        // Stored as decimal digits (TEXT), readable with sqlite3 as they are.
        let stored = try DatabaseQueue(path: path).read { db in
            try Row.fetchOne(db, sql: "SELECT typeof(write_bytes) AS t, write_bytes FROM usage WHERE period_start = 3600")
        }
        #expect(stored?["t"] == "text")
        #expect(stored?["write_bytes"] == String(counters()[.writeBytes]))
    }

    @Test func periodSumsAreCheckedAndAnOverflowIsAGapNotAWrap() throws {
        let path = try tempPath()
        defer { remove(path) }
        let ledger = try Ledger.open(path: path)
        try ledger.write(LedgerBatch(usage: [usage(BlockCounters([.writeBytes: .max - 10, .readBytes: 5]))], gaps: [], cursors: [:]))
        try ledger.write(LedgerBatch(usage: [usage(BlockCounters([.writeBytes: 10, .readBytes: 5]))], gaps: [], cursors: [:]))
        #expect(try ledger.usage().first?.usage[.writeBytes] == .max)
        #expect(try ledger.usage().first?.samples == 2)
        // One more byte would pass 2^64 - 1: the period keeps what it had, and a gap says why.
        try ledger.write(LedgerBatch(usage: [usage(BlockCounters([.writeBytes: 1, .readBytes: 5]))], gaps: [], cursors: [:]))
        let row = try #require(try ledger.usage().first)
        #expect(row.usage[.writeBytes] == .max)
        #expect(row.usage[.readBytes] == 10)  // the whole flush of that period is left out, not half of it
        #expect(row.samples == 2)
        let gap = try #require(try ledger.gaps().first)
        #expect(gap.reason.contains("write_bytes (18446744073709551615 + 1) would pass 2^64 - 1"))
        #expect(gap.from == 3600 && gap.to == 7200)
    }

    /// The v1 schema, exactly as vmpulse created it before counters were unsigned.
    static func makeV1Ledger(at path: String, rows: (Database) throws -> Void) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            let counters = IOCounter.allCases.map { "\($0.name) INTEGER NOT NULL DEFAULT 0" }.joined(separator: ", ")
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
            try db.execute(sql: "INSERT INTO grdb_migrations VALUES ('v1')")
            try db.execute(sql: "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            try db.execute(sql: "INSERT INTO meta VALUES ('created_at', '1700000000.25')")
            try db.execute(sql: """
                CREATE TABLE usage (vm_uuid TEXT NOT NULL, disk TEXT NOT NULL, period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
                  vm_name TEXT NOT NULL, disk_path TEXT NOT NULL, samples INTEGER NOT NULL, \(counters),
                  PRIMARY KEY (vm_uuid, disk, period_start))
                """)
            try db.execute(sql: """
                CREATE TABLE cursors (vm_uuid TEXT NOT NULL, disk TEXT NOT NULL, instance TEXT NOT NULL, sampled_at REAL NOT NULL, \(counters),
                  PRIMARY KEY (vm_uuid, disk))
                """)
            try db.execute(sql: """
                CREATE TABLE gaps (id INTEGER PRIMARY KEY AUTOINCREMENT, vm_uuid TEXT NOT NULL, vm_name TEXT NOT NULL, disk TEXT NOT NULL,
                  from_time REAL NOT NULL, to_time REAL NOT NULL, reason TEXT NOT NULL)
                """)
            try db.execute(sql: "CREATE TABLE samples (vm_uuid TEXT NOT NULL, disk TEXT NOT NULL, instance TEXT NOT NULL, sampled_at REAL NOT NULL, \(counters))")
            try db.execute(sql: "CREATE INDEX samples_time ON samples (sampled_at)")
            try db.execute(sql: "CREATE INDEX usage_period ON usage (period_start)")
            try rows(db)
        }
    }

    @Test func aV1LedgerIsReadAsItIsAndMigratedWithEveryValueExact() throws {
        let path = try tempPath()
        defer { remove(path) }
        // What v1 could hold: 0 to 2^63 - 1 (larger counters were clamped there).
        let values: [Int64] = [0, 1, 1 << 53 + 1, Int64.max - 1, Int64.max, 123_456_789_012, 42]
        func v1Counters(_ shift: Int) -> [Int64] { IOCounter.allCases.indices.map { values[($0 + shift) % values.count] } }
        func expected(_ shift: Int) -> BlockCounters {
            var c = BlockCounters()
            for (i, counter) in IOCounter.allCases.enumerated() { c[counter] = UInt64(v1Counters(shift)[i]) }
            return c
        }
        let names = IOCounter.allCases.map(\.name).joined(separator: ", ")
        let marks = Array(repeating: "?", count: IOCounter.allCases.count).joined(separator: ", ")
        try Self.makeV1Ledger(at: path) { db in
            for shift in 0..<3 {
                try db.execute(sql: "INSERT INTO usage (vm_uuid, disk, period_start, period_end, vm_name, disk_path, samples, \(names)) VALUES (?, ?, ?, ?, ?, ?, ?, \(marks))",
                               arguments: StatementArguments(["u1", "drive0", Int64(shift) * 3600, Int64(shift + 1) * 3600, "vm", "/d", 3] + v1Counters(shift)))
            }
            try db.execute(sql: "INSERT INTO cursors (vm_uuid, disk, instance, sampled_at, \(names)) VALUES (?, ?, ?, ?, \(marks))",
                           arguments: StatementArguments(["u1", "drive0", "10@20", 7_200.5] + v1Counters(2)))
            try db.execute(sql: "INSERT INTO samples (vm_uuid, disk, instance, sampled_at, \(names)) VALUES (?, ?, ?, ?, \(marks))",
                           arguments: StatementArguments(["u1", "drive0", "10@20", 7_200.5] + v1Counters(1)))
            try db.execute(sql: "INSERT INTO gaps (vm_uuid, vm_name, disk, from_time, to_time, reason) VALUES ('u1', 'vm', 'drive0', 1, 2, 'old')")
        }
        // billing export beside an agent that has not migrated it yet: read-only, as it is.
        let readOnly = try Ledger.open(path: path, readOnly: true)
        #expect(try readOnly.usage().map(\.usage) == (0..<3).map(expected))
        #expect(try readOnly.cursors()[key]?.counters == expected(2))

        // The agent opens it: migrated, every value the same, stored as digits now.
        let ledger = try Ledger.open(path: path)
        #expect(try ledger.usage().map(\.usage) == (0..<3).map(expected))
        #expect(try ledger.usage().map(\.samples) == [3, 3, 3])
        #expect(try ledger.cursors()[key] == LedgerCursor(instance: "10@20", counters: expected(2), sampledAt: 7_200.5))
        #expect(try ledger.gaps().map(\.reason) == ["old"])
        #expect(try ledger.createdAt() == 1_700_000_000.25)
        #expect(try ledger.sampleCount() == 1)
        let types = try DatabaseQueue(path: path).read { db in
            try String.fetchAll(db, sql: """
                SELECT DISTINCT typeof(write_bytes) FROM usage UNION SELECT DISTINCT typeof(read_bytes) FROM cursors
                UNION SELECT DISTINCT typeof(flush_ios) FROM samples
                """)
        }
        #expect(types == ["text"])
        // And it goes on past 2^63 from there.
        try ledger.write(LedgerBatch(usage: [usage(BlockCounters([.writeBytes: UInt64(1) << 63]), period: 7200)], gaps: [], cursors: [:]))
        let last = try #require(try ledger.usage(from: 7200).first)
        #expect(last.usage[.writeBytes] == expected(2)[.writeBytes] + (UInt64(1) << 63))
        // Opening again migrates nothing twice.
        #expect(try Ledger.open(path: path).usage(from: 7200).first == last)
    }

    @Test func aLedgerFromANewerVmpulseIsRefused() throws {
        let path = try tempPath()
        defer { remove(path) }
        _ = try Ledger.open(path: path)
        try DatabaseQueue(path: path).write { db in try db.execute(sql: "INSERT INTO grdb_migrations VALUES ('v99-from-the-future')") }
        for readOnly in [false, true] {
            do {
                _ = try Ledger.open(path: path, readOnly: readOnly)
                Issue.record("opened a ledger of a newer schema")
            } catch {
                #expect(error.kind == .schema)
                #expect(error.message.contains("written by a newer vmpulse"))
            }
        }
    }

    /// A ledger with one usage row and one cursor, then `sql` run on it by hand.
    func corrupted(_ sql: String, writableSchema: Bool = false) throws -> String {
        let path = try tempPath()
        let ledger = try Ledger.open(path: path)
        try ledger.write(LedgerBatch(
            usage: [usage(BlockCounters([.writeBytes: 100]))],
            gaps: [UsageGap(key: key, vmName: "vm", from: 10, to: 20, reason: "test")],
            cursors: [key: LedgerCursor(instance: "1@2@b", counters: BlockCounters([.writeBytes: 100]), sampledAt: 10)]))
        let queue = try DatabaseQueue(path: path)
        try queue.writeWithoutTransaction { db in
            if writableSchema {
                // NOT NULL dropped from the table's definition, as a careless hand edit could.
                try db.execute(sql: "PRAGMA writable_schema = ON")
                try db.execute(sql: "UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') WHERE type = 'table'")
                try db.execute(sql: "PRAGMA writable_schema = OFF")
            }
        }
        try DatabaseQueue(path: path).write { db in try db.execute(sql: sql) }
        return path
    }

    func exportError(_ path: String, _ read: (Ledger) throws -> Void) -> LedgerError? {
        do {
            try read(try Ledger.open(path: path, readOnly: true))
            return nil
        } catch let error as LedgerError {
            return error
        } catch {
            Issue.record("not a LedgerError: \(error)")
            return nil
        }
    }

    @Test(arguments: [
        ("UPDATE usage SET write_bytes = -5", "write_bytes holds '-5' (text), not an unsigned 64-bit count"),
        ("UPDATE usage SET write_bytes = 'lots'", "write_bytes holds 'lots' (text)"),
        ("UPDATE usage SET write_bytes = '18446744073709551616'", "write_bytes holds '18446744073709551616' (text)"),
        ("UPDATE usage SET write_bytes = '99999999999999999999999'", "holds '99999999999999999999999' (text)"),
        ("UPDATE usage SET write_bytes = ' 5'", "holds ' 5' (text)"),
        ("UPDATE usage SET write_bytes = '+5'", "holds '+5' (text)"),
        ("UPDATE usage SET write_bytes = '005'", "holds '005' (text)"),
        ("UPDATE usage SET write_bytes = ''", "holds '' (text)"),
        ("UPDATE usage SET write_bytes = 1e300", "holds '1.0e+300' (text)"),
        ("UPDATE usage SET write_bytes = x'00ff'", "write_bytes holds a blob of 2 bytes"),
        ("UPDATE usage SET read_bytes = 'x\ny'", "read_bytes holds 'x\\u{a}y' (text)"),
        ("UPDATE usage SET samples = -1", "samples holds -1, not a count of samples"),
        ("UPDATE usage SET samples = 'many'", "samples holds 'many' (text)"),
        ("UPDATE usage SET period_end = period_start", "period_end holds 3600, not the end of the period"),
        ("UPDATE usage SET period_start = 9223372036854775807", "period_start holds 9223372036854775807, not a time"),
        ("UPDATE usage SET period_start = 'soon'", "period_start holds 'soon' (text)"),
        ("UPDATE usage SET vm_name = 5.5", "vm_name holds '5.5' (text)") ,
    ])
    func aHandEditedUsageRowIsATypedErrorNamingIt(sql: String, message: String) throws {
        let path = try corrupted(sql)
        defer { remove(path) }
        let error = exportError(path) { _ = try $0.usage() }
        if sql.contains("vm_name = 5.5") {
            #expect(error == nil, "TEXT affinity turns 5.5 into the text '5.5', a valid name")
            return
        }
        let e = try #require(error, "\(sql) was read without an error")
        #expect(e.kind == .invalidRow)
        #expect(e.message.contains(message), "\(e.message)")
        #expect(e.message.contains("table usage, rowid 1 (vm 'u1', disk 'drive0', "), "\(e.message)")
        #expect(e.message.contains(path))
    }

    @Test func nullWhereTheSchemaWasLoosenedByHandIsNamed() throws {
        let path = try corrupted("UPDATE usage SET write_bytes = NULL", writableSchema: true)
        defer { remove(path) }
        let e = try #require(exportError(path) { _ = try $0.usage() })
        #expect(e.message.contains("table usage, rowid 1 (vm 'u1', disk 'drive0', period 1970-01-01T01:00:00Z): write_bytes holds NULL"))
        let gapPath = try corrupted("UPDATE gaps SET from_time = NULL", writableSchema: true)
        defer { remove(gapPath) }
        let g = try #require(exportError(gapPath) { _ = try $0.gaps() })
        #expect(g.message.contains("table gaps, rowid 1 (vm 'u1', disk 'drive0'): from_time holds NULL"), "\(g.message)")
    }

    @Test func badGapsAndCursorsAreNamedToo() throws {
        let gapPath = try corrupted("UPDATE gaps SET to_time = 'later'")
        defer { remove(gapPath) }
        let g = try #require(exportError(gapPath) { _ = try $0.gaps() })
        #expect(g.message.contains("table gaps, rowid 1"))
        #expect(g.message.contains("to_time holds 'later' (text), not a time in Unix seconds"))
        let hugeGap = try corrupted("UPDATE gaps SET to_time = 1e300")
        defer { remove(hugeGap) }
        #expect(exportError(hugeGap) { _ = try $0.gaps() }?.message.contains("to_time holds 1e+300 (a real number)") == true)

        let cursorPath = try corrupted("UPDATE cursors SET flush_ios = -1")
        defer { remove(cursorPath) }
        let c = try #require(exportError(cursorPath) { _ = try $0.cursors() })
        #expect(c.message.contains("table cursors, rowid 1 (vm 'u1', disk 'drive0'): flush_ios holds '-1' (text)"))
        // The agent cannot account from such a cursor: it reports it and writes nothing.
        do {
            let ledger = try Ledger.open(path: cursorPath)
            _ = try ledger.cursors()
            Issue.record("loaded a bad cursor")
        } catch {
            #expect(error.kind == .invalidRow)
        }
        // A bad row the writer must add to is named, and the transaction leaves everything as it was.
        let usagePath = try corrupted("UPDATE usage SET unmap_ios = 'x'")
        defer { remove(usagePath) }
        let writer = try Ledger.open(path: usagePath)
        do {
            try writer.write(LedgerBatch(usage: [usage(BlockCounters([.writeBytes: 1]))], gaps: [UsageGap(key: key, vmName: "vm", from: 1, to: 2, reason: "new")],
                                         cursors: [:]))
            Issue.record("added to a bad row")
        } catch {
            #expect(error.kind == .invalidRow)
            #expect(error.message.contains("unmap_ios holds 'x' (text)"))
        }
        #expect(try writer.gaps().map(\.reason) == ["test"])
    }

    @Test func aBadCreationTimeIsNamed() throws {
        let path = try corrupted("UPDATE meta SET value = 'yesterday' WHERE key = 'created_at'")
        defer { remove(path) }
        do {
            _ = try Ledger.open(path: path).createdAt()
            Issue.record("read a bad creation time")
        } catch {
            #expect(error.kind == .invalidRow)
            #expect(error.message.contains("created_at holds 'yesterday'"))
        }
    }
}
