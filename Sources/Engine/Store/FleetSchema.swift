import VMPulseCore

/// The fleet store's schema, defined once and written out for each dialect.
///
/// Counters are TEXT holding their decimal digits in both databases (every value up to
/// 2^64 - 1 exactly; neither SQLite's INTEGER nor PostgreSQL's BIGINT reaches it), and
/// are summed in Swift with checked arithmetic, never in SQL. Times are Unix seconds.
enum FleetSchema {
    enum ColumnType {
        case text, integer, real, counter
        func sql(_ d: SQLDialect) -> String {
            switch (self, d) {
            case (.text, _), (.counter, _): return "TEXT"
            case (.integer, .sqlite): return "INTEGER"
            case (.integer, .postgres): return "BIGINT"
            case (.real, .sqlite): return "REAL"
            case (.real, .postgres): return "DOUBLE PRECISION"
            }
        }
    }

    struct Table {
        var name: String
        var columns: [(name: String, type: ColumnType, nullable: Bool)]
        var key: [String]

        func create(_ d: SQLDialect) -> String {
            let cols = columns.map { "\($0.name) \($0.type.sql(d))\($0.nullable ? "" : " NOT NULL")" }
            return "CREATE TABLE \(name) (\(cols.joined(separator: ", ")), PRIMARY KEY (\(key.joined(separator: ", "))))"
        }
    }

    static let counterNames = IOCounter.allCases.map(\.name)

    static func col(_ name: String, _ type: ColumnType, null: Bool = false) -> (name: String, type: ColumnType, nullable: Bool) {
        (name, type, null)
    }

    static let hosts = Table(name: "hosts", columns: [
        col("name", .text), col("address", .text), col("state", .text), col("last_answer", .real, null: true),
        col("last_attempt", .real, null: true), col("problem", .text, null: true), col("vm_count", .integer),
        col("stale_after", .real), col("updated", .real),
    ], key: ["name"])

    /// Each host's own report of each VM it runs; the fleet's view of a VM is its best claim.
    static let hostVMs = Table(name: "host_vms", columns: [
        col("host", .text), col("uuid", .text), col("name", .text, null: true), col("status", .text),
        col("cpu_user", .real, null: true), col("cpu_sys", .real, null: true), col("mem_usage", .real, null: true),
        col("elapsed", .integer, null: true), col("stats_age", .real, null: true), col("hashes", .text),
        col("conf", .text, null: true), col("status_info", .text, null: true), col("guest", .text, null: true),
        col("devices", .text, null: true), col("seen", .real),
    ], key: ["host", "uuid"])

    static let statusChanges = Table(name: "status_changes", columns: [
        col("host", .text), col("uuid", .text), col("seq", .integer), col("at", .real), col("from_status", .text, null: true),
        col("to_status", .text), col("source", .text),
    ], key: ["host", "uuid", "seq"])

    /// Usage rows copied from the agents' ledgers: a period's whole stored usage, keyed so
    /// that a copy repeated or redone after a crash writes the same row again.
    static let billing = Table(name: "billing", columns: [
        col("host", .text), col("ledger", .text), col("vm_uuid", .text), col("disk", .text), col("period_start", .integer),
        col("period_end", .integer), col("vm_name", .text), col("disk_path", .text), col("samples", .integer), col("rev", .integer),
    ] + counterNames.map { col($0, .counter) }, key: ["host", "ledger", "vm_uuid", "disk", "period_start"])

    static let billingGaps = Table(name: "billing_gaps", columns: [
        col("host", .text), col("ledger", .text), col("gap_id", .integer), col("vm_uuid", .text), col("vm_name", .text), col("disk", .text),
        col("from_time", .real), col("to_time", .real), col("reason", .text),
    ], key: ["host", "ledger", "gap_id"])

    /// How far each host's ledger has been copied; moved in the same transaction as the rows.
    static let billingCursors = Table(name: "billing_cursors", columns: [
        col("host", .text), col("ledger", .text), col("rev", .integer), col("gap", .integer),
    ], key: ["host"])

    static let meta = Table(name: "fleet_meta", columns: [col("key", .text), col("value", .text)], key: ["key"])

    /// Migrations in order; each one's statements for a dialect. The applied count is
    /// `fleet_meta.schema_version`.
    static func migrations(_ d: SQLDialect) -> [[String]] {
        [
            [hosts, hostVMs, statusChanges, billing, billingGaps, billingCursors].map { $0.create(d) } + [
                "CREATE INDEX status_changes_at ON status_changes (at)",
                "CREATE INDEX billing_period ON billing (period_start)",
            ],
        ]
    }
}
