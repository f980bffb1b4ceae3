/// A value bound to or read from the fleet store, in the few types both SQLite and
/// PostgreSQL hold alike.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)

    var text: String? { if case .text(let s) = self { return s } else { return nil } }
    var integer: Int64? { if case .integer(let v) = self { return v } else { return nil } }
    var real: Double? {
        switch self {
        case .real(let v): return v
        case .integer(let v): return Double(v)
        default: return nil
        }
    }
}

/// One row of a query's answer, by column name.
public typealias SQLRow = [String: SQLValue]

/// One statement with `?` placeholders (a PostgreSQL database numbers them itself).
public struct SQLStatement: Sendable {
    public var sql: String
    public var arguments: [SQLValue]

    public init(_ sql: String, _ arguments: [SQLValue] = []) {
        self.sql = sql
        self.arguments = arguments
    }
}

/// What the fleet store needs of a database: run statements in one transaction, and
/// query. SQLite (GRDB) and PostgreSQL (postgres-nio) each implement it, so that the
/// store's logic and its schema are written once.
public protocol FleetDatabase: Sendable {
    var dialect: SQLDialect { get }
    /// Where it is, for messages (a path, or a URL without its password).
    var location: String { get }
    /// Runs `statements` in one transaction: all of them or none.
    func transaction(_ statements: [SQLStatement]) async throws(FleetStoreError)
    func query(_ sql: String, _ arguments: [SQLValue]) async throws(FleetStoreError) -> [SQLRow]
    func close() async
}

public enum SQLDialect: Sendable {
    case sqlite, postgres
}

/// The fleet store cannot be opened, read or written.
public struct FleetStoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
