import Glibc
import GRDB
import VMPulseCore

/// The billing ledger: per VM, disk and period, the usage as deltas; per disk the
/// cursor accounting resumes from; gaps; and raw samples for a retention.
/// SQLite in WAL mode through GRDB. Every flush is one transaction, so a cursor
/// never moves without the usage it stands for.
public final class Ledger: Sendable {
    public let path: String
    private let pool: DatabasePool

    private static let counterColumns = IOCounter.allCases.map(\.name)

    private init(path: String, pool: DatabasePool) {
        self.path = path
        self.pool = pool
    }

    /// Opens (creating if needed) the ledger and brings its schema up to date.
    /// A file that is not a ledger is refused and left as it is.
    public static func open(path: String, readOnly: Bool = false) throws(LedgerError) -> Ledger {
        var config = Configuration()
        config.readonly = readOnly
        config.busyMode = .timeout(5)
        do {
            let pool = try DatabasePool(path: path, configuration: config)
            if try pool.read({ db in try db.tableExists("grdb_migrations") && migrator.hasBeenSuperseded(db) }) {
                throw LedgerError(.schema, "ledger \(path) was written by a newer vmpulse (its schema has changes this one does not know); "
                    + "use that version, or a copy of the ledger made before it ran")
            }
            if !readOnly {
                try migrator.migrate(pool)
                try pool.write { db in
                    try db.execute(sql: "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)", arguments: [String(MonotonicWall.now())])
                }
            } else {
                guard try pool.read({ db in try db.tableExists("usage") }) else {
                    throw LedgerError(.schema, "\(path) is not a vmpulse ledger (no usage table)")
                }
            }
            return Ledger(path: path, pool: pool)
        } catch {
            throw LedgerError.from(error, path: path)
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            let counters = counterColumns.map { "\($0) INTEGER NOT NULL DEFAULT 0" }.joined(separator: ", ")
            try db.execute(sql: "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
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
            try db.execute(sql: """
                CREATE TABLE samples (vm_uuid TEXT NOT NULL, disk TEXT NOT NULL, instance TEXT NOT NULL, sampled_at REAL NOT NULL, \(counters))
                """)
            try db.execute(sql: "CREATE INDEX samples_time ON samples (sampled_at)")
            try db.execute(sql: "CREATE INDEX usage_period ON usage (period_start)")
        }
        m.registerMigration("v2-unsigned-counters", migrate: unsignedCounters)
        m.registerMigration("v3-revisions", migrate: revisions)
        return m
    }

    /// Schema v2: counters as TEXT holding their decimal digits, so that every value up to
    /// 2^64 - 1 is stored exactly. SQLite's INTEGER is signed 64-bit, and a column of INTEGER
    /// (or NUMERIC) affinity turns digits past 2^63 - 1 into an inexact REAL; TEXT affinity keeps
    /// them as written. (v1 stored counters as INTEGER, clamped at 2^63 - 1.) SQLite cannot change
    /// a column's type, so each table is rebuilt and its rows copied, integers cast to their
    /// exact digits. Sums are never done in SQL: `write` adds in Swift with checked arithmetic.
    static func unsignedCounters(_ db: Database) throws {
        let names = counterColumns.joined(separator: ", ")
        let text = counterColumns.map { "\($0) TEXT NOT NULL DEFAULT '0'" }.joined(separator: ", ")
        let cast = counterColumns.map { "CAST(\($0) AS TEXT)" }.joined(separator: ", ")
        let tables: [(name: String, fixed: String, columns: String)] = [
            ("usage", """
                vm_uuid TEXT NOT NULL, disk TEXT NOT NULL, period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
                vm_name TEXT NOT NULL, disk_path TEXT NOT NULL, samples INTEGER NOT NULL, \(text), PRIMARY KEY (vm_uuid, disk, period_start)
                """, "vm_uuid, disk, period_start, period_end, vm_name, disk_path, samples"),
            ("cursors", """
                vm_uuid TEXT NOT NULL, disk TEXT NOT NULL, instance TEXT NOT NULL, sampled_at REAL NOT NULL, \(text), PRIMARY KEY (vm_uuid, disk)
                """, "vm_uuid, disk, instance, sampled_at"),
            ("samples", "vm_uuid TEXT NOT NULL, disk TEXT NOT NULL, instance TEXT NOT NULL, sampled_at REAL NOT NULL, \(text)",
             "vm_uuid, disk, instance, sampled_at"),
        ]
        for t in tables {
            try db.execute(sql: "ALTER TABLE \(t.name) RENAME TO \(t.name)_v1")
            try db.execute(sql: "CREATE TABLE \(t.name) (\(t.fixed))")
            try db.execute(sql: "INSERT INTO \(t.name) (\(t.columns), \(names)) SELECT \(t.columns), \(cast) FROM \(t.name)_v1 ORDER BY rowid")
            try db.execute(sql: "DROP TABLE \(t.name)_v1")
        }
        try db.execute(sql: "CREATE INDEX samples_time ON samples (sampled_at)")
        try db.execute(sql: "CREATE INDEX usage_period ON usage (period_start)")
    }

    /// Schema v3: a revision per usage row, so that an engine can copy the ledger
    /// incrementally (`records(after:)`). Every insert or update of a period takes the next
    /// number of `meta.usage_rev` in the flush's own transaction, so a row read at revision r
    /// is never changed without getting a higher one. Rows already there get their rowid.
    /// `meta.ledger_id` names this ledger, so that an engine whose cursor belongs to another
    /// file (a ledger replaced or restored) starts over instead of skipping rows.
    static func revisions(_ db: Database) throws {
        try db.execute(sql: "ALTER TABLE usage ADD COLUMN rev INTEGER NOT NULL DEFAULT 0")
        try db.execute(sql: "UPDATE usage SET rev = rowid")
        try db.execute(sql: "CREATE INDEX usage_rev ON usage (rev)")
        try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('usage_rev', (SELECT CAST(COALESCE(MAX(rev), 0) AS TEXT) FROM usage))")
        var rng = SystemRandomNumberGenerator()
        let id = (0..<2).map { _ in String(rng.next() as UInt64, radix: 16) }.joined(separator: "-")
        try db.execute(sql: "INSERT OR IGNORE INTO meta (key, value) VALUES ('ledger_id', ?)", arguments: [id])
    }

    /// When the ledger was created (Unix seconds).
    public func createdAt() throws(LedgerError) -> Double {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT rowid AS rowid, value FROM meta WHERE key = 'created_at'") else {
                throw LedgerError(.schema, "ledger \(path) has no creation time (meta.created_at)")
            }
            let text = try LedgerRow(table: "meta", row: row, path: path).text("value")
            guard let t = Double(text), t.isFinite, t >= 0, t <= Double(LedgerRow.timeRange.upperBound) else {
                throw LedgerError(.invalidRow, "ledger \(path): table meta, created_at holds '\(text.prefix(40))', not a time in Unix seconds")
            }
            return t
        }
    }

    public func cursors() throws(LedgerError) -> [DiskKey: LedgerCursor] {
        try read { db in
            var result: [DiskKey: LedgerCursor] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT rowid AS rowid, * FROM cursors") {
                let r = LedgerRow(table: "cursors", row: row, path: path)
                let key = DiskKey(vmUUID: try r.text("vm_uuid"), disk: try r.text("disk"))
                result[key] = LedgerCursor(instance: try r.text("instance"), counters: try r.counters(), sampledAt: try r.time("sampled_at"))
            }
            return result
        }
    }

    /// Writes one flush in one transaction: usage added to its periods, gaps, cursors,
    /// and a raw sample per cursor.
    ///
    /// A period's stored usage and the flush's are added here, in Swift, with checked
    /// arithmetic (SQLite would turn an integer overflow into an inexact REAL). A sum that
    /// would pass 2^64 - 1 (only a lying peer's counters get there) is not written: the
    /// period keeps what it had, and a gap says what was not billed and why.
    public func write(_ batch: LedgerBatch) throws(LedgerError) {
        guard !batch.isEmpty else { return }
        let cols = Self.counterColumns
        let placeholders = Array(repeating: "?", count: cols.count).joined(separator: ", ")
        let cursorSQL = """
            INSERT OR REPLACE INTO cursors (vm_uuid, disk, instance, sampled_at, \(cols.joined(separator: ", "))) VALUES (?, ?, ?, ?, \(placeholders))
            """
        let sampleSQL = "INSERT INTO samples (vm_uuid, disk, instance, sampled_at, \(cols.joined(separator: ", "))) VALUES (?, ?, ?, ?, \(placeholders))"
        let path = self.path
        try write { db in
            var rev = try Self.usageRevision(db, path: path)
            for u in batch.usage {
                if let gap = try Self.add(u, rev: &rev, db: db, path: path) { try Self.insert(gap, db: db) }
            }
            try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'usage_rev'", arguments: [String(rev)])
            for g in batch.gaps { try Self.insert(g, db: db) }
            for (key, c) in batch.cursors {
                let args = Self.arguments([key.vmUUID, key.disk, c.instance, c.sampledAt] as [any DatabaseValueConvertible] + Self.values(c.counters))
                try db.execute(sql: cursorSQL, arguments: args)
                try db.execute(sql: sampleSQL, arguments: args)
            }
        }
    }

    /// Adds one period's usage to what the ledger holds for it; returns the gap to record
    /// instead when the sum does not fit.
    private static func add(_ u: PeriodUsage, rev: inout Int64, db: Database, path: String) throws -> UsageGap? {
        let cols = counterColumns
        let key: [any DatabaseValueConvertible] = [u.key.vmUUID, u.key.disk, u.periodStart]
        guard let row = try Row.fetchOne(
            db, sql: "SELECT rowid AS rowid, * FROM usage WHERE vm_uuid = ? AND disk = ? AND period_start = ?", arguments: arguments(key))
        else {
            let placeholders = Array(repeating: "?", count: cols.count).joined(separator: ", ")
            try db.execute(
                sql: """
                    INSERT INTO usage (vm_uuid, disk, period_start, period_end, vm_name, disk_path, samples, rev, \(cols.joined(separator: ", ")))
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, \(placeholders))
                    """,
                arguments: arguments(key + [u.periodEnd, u.vmName, u.diskPath, Int64(u.samples), try nextRevision(&rev, path: path)] + values(u.usage)))
            return nil
        }
        let stored = LedgerRow(table: "usage", row: row, path: path)
        let counters = try stored.counters()
        let samples = try stored.integer("samples", in: 0...Int64.max, "a count of samples (0 or more)")
        let (sum, overflow) = counters.addingReportingOverflow(u.usage)
        let (sampleSum, samplesOverflow) = samples.addingReportingOverflow(Int64(u.samples))
        guard overflow.isEmpty, !samplesOverflow else {
            let what = overflow.map { "\($0.name) (\(counters[$0]) + \(u.usage[$0]))" } + (samplesOverflow ? ["samples"] : [])
            return UsageGap(key: u.key, vmName: u.vmName, from: Double(u.periodStart), to: Double(u.periodEnd),
                            reason: "the period's total of \(what.joined(separator: ", ")) would pass 2^64 - 1; this flush's usage of the period is not billed")
        }
        try db.execute(
            sql: "UPDATE usage SET vm_name = ?, disk_path = ?, samples = ?, rev = ?, \(cols.map { "\($0) = ?" }.joined(separator: ", ")) WHERE rowid = ?",
            arguments: arguments([u.vmName, u.diskPath, sampleSum, try nextRevision(&rev, path: path)] + values(sum)
                                 + [try stored.integer("rowid", in: Int64.min...Int64.max, "a rowid")]))
        return nil
    }

    /// The last revision given to a usage row (`meta.usage_rev`), checked as it is read.
    private static func usageRevision(_ db: Database, path: String) throws -> Int64 {
        guard let row = try Row.fetchOne(db, sql: "SELECT rowid AS rowid, value FROM meta WHERE key = 'usage_rev'") else { return 0 }
        let text = try LedgerRow(table: "meta", row: row, path: path).text("value")
        guard let rev = Int64(text), rev >= 0 else {
            throw LedgerError(.invalidRow, "ledger \(path): table meta, usage_rev holds '\(text.prefix(40))', not a revision (0 or more)")
        }
        return rev
    }

    private static func nextRevision(_ rev: inout Int64, path: String) throws -> Int64 {
        guard rev < Int64.max else { throw LedgerError(.invalidRow, "ledger \(path): table meta, usage_rev is at its largest value") }
        rev += 1
        return rev
    }

    private static func insert(_ g: UsageGap, db: Database) throws {
        try db.execute(
            sql: "INSERT INTO gaps (vm_uuid, vm_name, disk, from_time, to_time, reason) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [g.key.vmUUID, g.vmName, g.key.disk, g.from, g.to, g.reason])
    }

    /// Deletes raw samples older than `before` (Unix seconds); periods are kept.
    @discardableResult
    public func pruneSamples(before: Double) throws(LedgerError) -> Int {
        try write { db in
            try db.execute(sql: "DELETE FROM samples WHERE sampled_at < ?", arguments: [before])
            return db.changesCount
        }
    }

    public func sampleCount() throws(LedgerError) -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM samples") ?? 0 }
    }

    /// Periods starting in [from, to), for the VM with this UUID or name when given.
    /// A row whose start is not a time at all is selected whatever the range, so that it is
    /// reported (a `LedgerError` naming it) rather than silently left out of an export.
    public func usage(from: Int64? = nil, to: Int64? = nil, vm: String? = nil) throws(LedgerError) -> [PeriodUsage] {
        try read { db in
            var sql = """
                SELECT rowid AS rowid, * FROM usage WHERE (typeof(period_start) != 'integer' OR period_start NOT BETWEEN ? AND ?
                  OR (period_start >= ? AND period_start < ?))
                """
            var args: [any DatabaseValueConvertible] = [
                LedgerRow.timeRange.lowerBound, LedgerRow.timeRange.upperBound, from ?? Int64.min, to ?? Int64.max,
            ]
            if let vm {
                // A VM that shared its UUID with another is filed under `UUID/SOCKET` meanwhile
                // (LedgerKeys): asking for the UUID gathers those rows too.
                sql += " AND (vm_uuid = ? OR vm_name = ? OR substr(vm_uuid, 1, length(?) + 1) = ? || '/')"
                args += [vm, vm, vm, vm]
            }
            sql += " ORDER BY period_start, vm_uuid, disk"
            return try Row.fetchAll(db, sql: sql, arguments: Self.arguments(args)).map { row throws(LedgerError) in
                try LedgerRow(table: "usage", row: row, path: path).periodUsage()
            }
        }
    }

    /// Gaps overlapping [from, to). As for `usage`, a row whose times are not numbers is
    /// selected whatever the range, and reported.
    public func gaps(from: Double? = nil, to: Double? = nil, vm: String? = nil) throws(LedgerError) -> [UsageGap] {
        try read { db in
            var sql = """
                SELECT rowid AS rowid, * FROM gaps WHERE (typeof(from_time) NOT IN ('real', 'integer') OR typeof(to_time) NOT IN ('real', 'integer')
                  OR (to_time >= ? AND from_time < ?))
                """
            var args: [any DatabaseValueConvertible] = [from ?? -Double.infinity, to ?? Double.infinity]
            if let vm {
                // A VM that shared its UUID with another is filed under `UUID/SOCKET` meanwhile
                // (LedgerKeys): asking for the UUID gathers those rows too.
                sql += " AND (vm_uuid = ? OR vm_name = ? OR substr(vm_uuid, 1, length(?) + 1) = ? || '/')"
                args += [vm, vm, vm, vm]
            }
            sql += " ORDER BY from_time, id"
            return try Row.fetchAll(db, sql: sql, arguments: Self.arguments(args)).map { row throws(LedgerError) in
                try LedgerRow(table: "gaps", row: row, path: path).usageGap()
            }
        }
    }

    // MARK: helpers

    static func arguments(_ values: [any DatabaseValueConvertible]) -> StatementArguments {
        StatementArguments(values.map { Optional($0) })
    }

    /// Counters as the ledger stores them since schema v2: the decimal digits, exactly.
    private static func values(_ c: BlockCounters) -> [any DatabaseValueConvertible] {
        IOCounter.allCases.map { String(c[$0]) }
    }

    func read<T>(_ body: (Database) throws -> T) throws(LedgerError) -> T {
        do { return try pool.read(body) } catch { throw LedgerError.from(error, path: path) }
    }

    private func write<T>(_ body: (Database) throws -> T) throws(LedgerError) -> T {
        do { return try pool.write(body) } catch { throw LedgerError.from(error, path: path) }
    }
}

/// Wall-clock time without Foundation.
enum MonotonicWall {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
