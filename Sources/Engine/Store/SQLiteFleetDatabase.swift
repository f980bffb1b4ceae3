import GRDB

/// The fleet store in one SQLite file (GRDB, WAL mode): nothing to set up for one engine.
/// GRDB's async `write`/`read` run on its own queues, off Swift's cooperative pool.
public final class SQLiteFleetDatabase: FleetDatabase {
    public let dialect = SQLDialect.sqlite
    public let location: String
    private let pool: DatabasePool

    public init(path: String, readOnly: Bool = false) throws(FleetStoreError) {
        location = path
        var config = Configuration()
        config.readonly = readOnly
        config.busyMode = .timeout(5)
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw FleetStoreError("fleet store \(path): \(Self.describe(error))")
        }
    }

    public func transaction(_ statements: [SQLStatement]) async throws(FleetStoreError) {
        do {
            try await pool.write { db in
                for s in statements { try db.execute(sql: s.sql, arguments: Self.arguments(s.arguments)) }
            }
        } catch {
            throw FleetStoreError("fleet store \(location): \(Self.describe(error))")
        }
    }

    public func query(_ sql: String, _ arguments: [SQLValue]) async throws(FleetStoreError) -> [SQLRow] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(db, sql: sql, arguments: Self.arguments(arguments)).map { row in
                    var out: SQLRow = [:]
                    for (name, value) in row {
                        switch value.storage {
                        case .null: out[name] = .null
                        case .int64(let v): out[name] = .integer(v)
                        case .double(let v): out[name] = .real(v)
                        case .string(let v): out[name] = .text(v)
                        case .blob: out[name] = .null  // the schema has no BLOB column; a hand-made one is not read
                        }
                    }
                    return out
                }
            }
        } catch {
            throw FleetStoreError("fleet store \(location): \(Self.describe(error))")
        }
    }

    public func close() async {
        try? pool.close()
    }

    static func arguments(_ values: [SQLValue]) -> StatementArguments {
        StatementArguments(values.map { v -> (any DatabaseValueConvertible)? in
            switch v {
            case .null: return nil
            case .integer(let i): return i
            case .real(let d): return d
            case .text(let s): return s
            }
        })
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? DatabaseError { return "\(e.resultCode): \(e.message ?? "no message")" }
        return "\(error)"
    }
}
