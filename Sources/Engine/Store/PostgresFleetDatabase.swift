import Foundation
import Logging
import NIOCore
import PostgresNIO

/// The fleet store on a PostgreSQL server (postgres-nio's pooled `PostgresClient`), for a
/// fleet whose engine data belongs in the provider's own database.
///
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, or with `?host=/DIR` for the server's
/// Unix socket in DIR (as libpq takes it). TLS is not used yet: keep the server on loopback
/// or a socket. Every call is bounded by `timeout`: a server that went away makes a call
/// fail (the store reports itself degraded) instead of waiting for the pool to reconnect.
public final class PostgresFleetDatabase: FleetDatabase {
    public let dialect = SQLDialect.postgres
    public let location: String
    let client: PostgresClient
    let timeout: Duration
    private let runner: Task<Void, Never>

    public init(url: String, timeout: Duration = .seconds(10)) throws(FleetStoreError) {
        var config = try Self.configuration(url)
        location = config.shown
        self.timeout = timeout
        var options = PostgresClient.Configuration.Options()
        options.connectTimeout = .seconds(5)
        options.maximumConnections = 4
        config.client.options = options
        let client = PostgresClient(configuration: config.client, backgroundLogger: Logger(label: "vmpulse.engine.postgres"))
        self.client = client
        runner = Task { await client.run() }
    }

    struct Parsed {
        var client: PostgresClient.Configuration
        var shown: String
    }

    static func configuration(_ url: String) throws(FleetStoreError) -> Parsed {
        guard let c = URLComponents(string: url), c.scheme == "postgres" || c.scheme == "postgresql" else {
            throw FleetStoreError("'\(url.prefix(200))' is not a postgres:// URL (postgres://USER@HOST:PORT/DATABASE)")
        }
        let user = c.user.flatMap { $0.removingPercentEncoding } ?? "postgres"
        let password = c.password.flatMap { $0.removingPercentEncoding }
        let database = String(c.path.drop(while: { $0 == "/" }))
        let socketDir = c.queryItems?.first(where: { $0.name == "host" })?.value
        let port = c.port ?? 5432
        guard (1...65535).contains(port) else { throw FleetStoreError("database: port \(port) is out of range") }
        var shown = "postgres://\(user)@\(c.host ?? "")\(c.port.map { ":\($0)" } ?? "")/\(database)"
        let config: PostgresClient.Configuration
        if let dir = socketDir, dir.hasPrefix("/") {
            config = PostgresClient.Configuration(unixSocketPath: dir + "/.s.PGSQL.\(port)", username: user, password: password,
                                                  database: database.isEmpty ? nil : database)
            shown += "?host=\(dir)"
        } else if let host = c.host, !host.isEmpty {
            config = PostgresClient.Configuration(host: host, port: port, username: user, password: password,
                                                  database: database.isEmpty ? nil : database, tls: .disable)
        } else {
            throw FleetStoreError("database: '\(shown)' names no host (postgres://USER@HOST/DB, or ?host=/socket/dir)")
        }
        return Parsed(client: config, shown: shown)
    }

    public func transaction(_ statements: [SQLStatement]) async throws(FleetStoreError) {
        let client = self.client
        let logger = Logger(label: "vmpulse.engine.postgres")
        try await bounded {
            try await client.withTransaction(logger: logger) { connection in
                for s in statements { try await connection.query(Self.query(s), logger: logger) }
            }
        }
    }

    public func query(_ sql: String, _ arguments: [SQLValue]) async throws(FleetStoreError) -> [SQLRow] {
        let client = self.client
        let q = try Self.query(SQLStatement(sql, arguments))
        return try await bounded {
            var out: [SQLRow] = []
            for try await row in try await client.query(q) {
                var r: SQLRow = [:]
                for cell in row { r[cell.columnName] = try Self.value(cell) }
                out.append(r)
            }
            return out
        }
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }

    /// Runs `body` within `timeout`; any failure becomes a `FleetStoreError` naming the server.
    private func bounded<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws(FleetStoreError) -> T {
        let timeout = self.timeout
        do {
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body() }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let value = first else {
                    throw FleetStoreError("fleet store \(location): no answer within \(timeout)")
                }
                return value
            }
        } catch let e as FleetStoreError {
            throw e
        } catch {
            throw FleetStoreError("fleet store \(location): \(Self.describe(error))")
        }
    }

    /// The statement with PostgreSQL's numbered placeholders (`$1`, ...) for the `?` it is
    /// written with (the schema's SQL holds no `?` of its own).
    static func query(_ s: SQLStatement) throws(FleetStoreError) -> PostgresQuery {
        var sql = ""
        var n = 0
        for ch in s.sql {
            if ch == "?" {
                n += 1
                sql += "$\(n)"
            } else {
                sql.append(ch)
            }
        }
        var binds = PostgresBindings(capacity: s.arguments.count)
        for a in s.arguments {
            switch a {
            case .null: binds.appendNull()
            case .integer(let v): binds.append(v)
            case .real(let v): binds.append(v)
            case .text(let v): binds.append(v)
            }
        }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    static func value(_ cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int8, .int4, .int2: return .integer(try cell.decode(Int64.self))
        case .float8, .float4, .numeric: return .real(try cell.decode(Double.self))
        default: return .text(try cell.decode(String.self))
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? PSQLError {
            var parts = ["\(e.code)"]
            if let m = e.serverInfo?[.message] { parts.append(m) }
            if let s = e.serverInfo?[.sqlState] { parts.append("SQLSTATE \(s)") }
            if let u = e.underlying { parts.append("\(u)") }
            return parts.joined(separator: ": ")
        }
        return "\(error)"
    }
}
