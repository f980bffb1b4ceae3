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
        return m
    }

    /// When the ledger was created (Unix seconds).
    public func createdAt() throws(LedgerError) -> Double {
        try read { db in
            guard let text = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'created_at'"), let t = Double(text) else {
                throw LedgerError(.schema, "ledger \(path) has no creation time (meta.created_at)")
            }
            return t
        }
    }

    public func cursors() throws(LedgerError) -> [DiskKey: LedgerCursor] {
        try read { db in
            var result: [DiskKey: LedgerCursor] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM cursors") {
                let key = DiskKey(vmUUID: row["vm_uuid"], disk: row["disk"])
                result[key] = LedgerCursor(instance: row["instance"], counters: Self.counters(row), sampledAt: row["sampled_at"])
            }
            return result
        }
    }

    /// Writes one flush in one transaction: usage added to its periods, gaps, cursors,
    /// and a raw sample per cursor.
    public func write(_ batch: LedgerBatch) throws(LedgerError) {
        guard !batch.isEmpty else { return }
        let cols = Self.counterColumns
        let placeholders = Array(repeating: "?", count: cols.count).joined(separator: ", ")
        let usageSQL = """
            INSERT INTO usage (vm_uuid, disk, period_start, period_end, vm_name, disk_path, samples, \(cols.joined(separator: ", ")))
            VALUES (?, ?, ?, ?, ?, ?, ?, \(placeholders))
            ON CONFLICT (vm_uuid, disk, period_start) DO UPDATE SET vm_name = excluded.vm_name, disk_path = excluded.disk_path,
              samples = samples + excluded.samples, \(cols.map { "\($0) = \($0) + excluded.\($0)" }.joined(separator: ", "))
            """
        let cursorSQL = """
            INSERT OR REPLACE INTO cursors (vm_uuid, disk, instance, sampled_at, \(cols.joined(separator: ", "))) VALUES (?, ?, ?, ?, \(placeholders))
            """
        let sampleSQL = "INSERT INTO samples (vm_uuid, disk, instance, sampled_at, \(cols.joined(separator: ", "))) VALUES (?, ?, ?, ?, \(placeholders))"
        try write { db in
            for u in batch.usage {
                try db.execute(sql: usageSQL, arguments: Self.arguments(
                    [u.key.vmUUID, u.key.disk, u.periodStart, u.periodEnd, u.vmName, u.diskPath, u.samples] as [any DatabaseValueConvertible]
                        + Self.values(u.usage)))
            }
            for g in batch.gaps {
                try db.execute(
                    sql: "INSERT INTO gaps (vm_uuid, vm_name, disk, from_time, to_time, reason) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [g.key.vmUUID, g.vmName, g.key.disk, g.from, g.to, g.reason])
            }
            for (key, c) in batch.cursors {
                let args = Self.arguments([key.vmUUID, key.disk, c.instance, c.sampledAt] as [any DatabaseValueConvertible] + Self.values(c.counters))
                try db.execute(sql: cursorSQL, arguments: args)
                try db.execute(sql: sampleSQL, arguments: args)
            }
        }
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
    public func usage(from: Int64? = nil, to: Int64? = nil, vm: String? = nil) throws(LedgerError) -> [PeriodUsage] {
        try read { db in
            var sql = "SELECT * FROM usage WHERE period_start >= ? AND period_start < ?"
            var args: [any DatabaseValueConvertible] = [from ?? Int64.min, to ?? Int64.max]
            if let vm {
                sql += " AND (vm_uuid = ? OR vm_name = ?)"
                args += [vm, vm]
            }
            sql += " ORDER BY period_start, vm_uuid, disk"
            return try Row.fetchAll(db, sql: sql, arguments: Self.arguments(args)).map { row in
                PeriodUsage(
                    key: DiskKey(vmUUID: row["vm_uuid"], disk: row["disk"]), vmName: row["vm_name"], diskPath: row["disk_path"],
                    periodStart: row["period_start"], periodEnd: row["period_end"], usage: Self.counters(row), samples: row["samples"])
            }
        }
    }

    /// Gaps overlapping [from, to).
    public func gaps(from: Double? = nil, to: Double? = nil, vm: String? = nil) throws(LedgerError) -> [UsageGap] {
        try read { db in
            var sql = "SELECT * FROM gaps WHERE to_time >= ? AND from_time < ?"
            var args: [any DatabaseValueConvertible] = [from ?? -Double.greatestFiniteMagnitude, to ?? Double.greatestFiniteMagnitude]
            if let vm {
                sql += " AND (vm_uuid = ? OR vm_name = ?)"
                args += [vm, vm]
            }
            sql += " ORDER BY from_time, id"
            return try Row.fetchAll(db, sql: sql, arguments: Self.arguments(args)).map { row in
                UsageGap(key: DiskKey(vmUUID: row["vm_uuid"], disk: row["disk"]), vmName: row["vm_name"],
                         from: row["from_time"], to: row["to_time"], reason: row["reason"])
            }
        }
    }

    // MARK: helpers

    private static func arguments(_ values: [any DatabaseValueConvertible]) -> StatementArguments {
        StatementArguments(values.map { Optional($0) })
    }

    private static func values(_ c: BlockCounters) -> [any DatabaseValueConvertible] {
        IOCounter.allCases.map { Int64(clamping: c[$0]) }
    }

    private static func counters(_ row: Row) -> BlockCounters {
        var c = BlockCounters()
        for counter in IOCounter.allCases {
            let v: Int64 = row[counter.name] ?? 0
            c[counter] = UInt64(max(0, v))
        }
        return c
    }

    private func read<T>(_ body: (Database) throws -> T) throws(LedgerError) -> T {
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
