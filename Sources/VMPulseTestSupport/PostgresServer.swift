import Foundation
import Glibc

/// A throw-away PostgreSQL cluster (Debian's postgresql-15, installed by `make setup`):
/// made with `initdb` in a temporary directory and run as the unprivileged user `nobody`
/// (PostgreSQL refuses root), listening only on a Unix socket in that directory.
public final class PostgresServer: @unchecked Sendable {
    public static let bin = "/usr/lib/postgresql/15/bin"
    public let directory: String
    public let port: Int
    public let user = "engine"

    public init(directory: String) throws {
        self.directory = directory
        port = Int.random(in: 20_000...60_000)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.run("/bin/chown", ["nobody:nogroup", directory])
        try Self.run("/bin/chmod", ["700", directory])
        try asNobody("initdb", ["-D", directory + "/data", "-A", "trust", "-U", user, "--no-sync"])
        try start()
    }

    /// `postgres://` URL of the cluster's `postgres` database over its socket.
    public var url: String { "postgres://\(user)@localhost:\(port)/postgres?host=\(directory)" }

    public func start() throws {
        try asNobody("pg_ctl", ["-D", directory + "/data", "-w", "-t", "30", "-l", directory + "/log",
                                "-o", "-k \(directory) -p \(port) -c listen_addresses='' -c fsync=off", "start"])
    }

    /// Stops the server at once (`-m immediate`: as a crash, connections cut).
    public func stop() throws {
        try asNobody("pg_ctl", ["-D", directory + "/data", "-w", "-t", "30", "-m", "immediate", "stop"])
    }

    /// `psql -Atc SQL`: the rows, one per line, fields separated by `|`.
    public func psql(_ sql: String) throws -> String {
        let r = try Spawn.capture("/usr/sbin/runuser", ["-u", "nobody", "--", "/usr/bin/psql", "-h", directory, "-p", String(port), "-U", user,
                                                        "-d", "postgres", "-Atc", sql])
        guard r.status == 0 else { throw TestBedError("psql \(sql): \(r.stderr)") }
        return r.stdout
    }

    public var logText: String { (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? "" }

    func asNobody(_ tool: String, _ args: [String]) throws {
        try Self.run("/usr/sbin/runuser", ["-u", "nobody", "--", Self.bin + "/" + tool] + args)
    }

    static func run(_ program: String, _ args: [String]) throws {
        let r = try Spawn.capture(program, args)
        guard r.status == 0 else { throw TestBedError("\(program) \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)\(r.stdout)") }
    }

    public func shutdown() {
        try? stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
