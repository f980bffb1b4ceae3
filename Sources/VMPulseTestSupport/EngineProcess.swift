import Foundation
import Glibc
import VMPulseCore

/// A real `vmpulse engine run` process for end-to-end tests.
public final class EngineProcess: @unchecked Sendable {
    // @unchecked: `pid` is written by start/stop from the test's one task.
    public let binary: String
    public let configPath: String
    public let database: String
    public let log: String
    public private(set) var pid: pid_t = 0

    /// Writes a configuration naming `agents` (name, HOST:PORT) and starts the engine.
    public init(agents: [(name: String, address: String)], database: String, directory: String, runtimeInterval: Double = 1,
                billingInterval: Double = 1, deviceInterval: Double = 5, timeout: Double = 2, start: Bool = true) throws {
        binary = Spawn.builtProduct("vmpulse")
        self.database = database
        configPath = directory + "/engine.yaml"
        log = directory + "/engine.log"
        let list = agents.map { "  - name: \($0.name)\n    address: \($0.address)" }.joined(separator: "\n")
        let yaml = """
            agents:
            \(list)
            database: \(database)
            poll:
              runtime_interval: \(runtimeInterval)
              device_interval: \(deviceInterval)
              billing_interval: \(billingInterval)
              timeout: \(timeout)
            """
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        if start { try self.start() }
    }

    public func start() throws {
        pid = try Spawn.start(binary, ["engine", "run", "--config", configPath], outputPath: log)
    }

    public var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// `vmpulse engine ARGS --database DB`: exit status and output.
    public func command(_ args: [String]) throws -> Spawn.Output {
        try Spawn.capture(binary, ["engine"] + args + ["--database", database])
    }

    /// `vmpulse engine status --json`, parsed (the exit status is 0 or 3 when it answers).
    public func status() throws -> JSONValue {
        let r = try command(["status", "--json"])
        guard r.status == 0 || r.status == 3 else { throw TestBedError("engine status exited \(r.status): \(r.stderr)") }
        return try JSONParser.parse(Array(r.stdout.utf8))
    }

    @discardableResult
    public func stop(timeout: Duration = .seconds(20)) async throws -> Int32 {
        guard pid > 0 else { return 0 }
        let code = try await Spawn.terminate(pid, timeout: timeout)
        pid = 0
        guard let code else { throw TestBedError("the engine did not stop within \(timeout) after SIGTERM: \(logText.suffix(2000))") }
        return code
    }

    /// SIGKILL: no chance to flush anything.
    public func killHard() async throws {
        guard pid > 0 else { return }
        try await Spawn.killHard(pid)
        pid = 0
    }

    deinit {
        if pid > 0 {
            kill(pid, SIGKILL)
            _ = Spawn.exited(pid)
        }
    }
}
