import Foundation
import Glibc
import VMPulseCore
import VMPulseTestSupport

/// What the heartbeat tests share: a key file, a program that records each run, and the
/// agent's status read with `vmpulse heartbeat status --json` (inside a namespace when given).
enum HeartbeatFixture {
    /// A 32-byte key, mode 0600.
    static func keyFile(in directory: String, bytes: [UInt8] = (0..<32).map { _ in UInt8.random(in: 0...255) }) throws -> String {
        let path = directory + "/heartbeat.key"
        FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600])
        return path
    }

    /// A program that appends `--- ARG` and its standard input to `file`.
    static func recorder(in directory: String, file: String) throws -> String {
        let path = directory + "/record.sh"
        try "#!/bin/sh\n{ echo \"--- $1\"; cat; } >> \(file)\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    /// The runs `recorder` saw, by argument: each with its `name=value` lines.
    static func runs(_ file: String) -> [(arg: String, fields: [String: String])] {
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        var out: [(String, [String: String])] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("--- ") {
                out.append((String(line.dropFirst(4)), [:]))
            } else if let eq = line.firstIndex(of: "="), !out.isEmpty {
                out[out.count - 1].1[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
        }
        return out
    }

    /// `vmpulse heartbeat status --json` of the agent on `port` (in namespace `ns`).
    static func status(port: Int, launcher: [String] = []) throws -> JSONValue {
        let binary = Spawn.builtProduct("vmpulse")
        let arguments = ["heartbeat", "status", "--json", "--agent", "127.0.0.1:\(port)", "--timeout", "2"]
        let out = try Spawn.capture(launcher.first ?? binary, Array(launcher.dropFirst()) + (launcher.isEmpty ? [] : [binary]) + arguments)
        guard out.status == 0 || out.status == 3 else { throw TestBedError("vmpulse heartbeat status: exit \(out.status): \(out.stderr)") }
        return try JSONParser.parse(Array(out.stdout.utf8))
    }

    static func link(_ status: JSONValue, _ name: String) -> JSONValue? {
        status["links"]?.arrayValue?.first { $0["name"]?.stringValue == name }
    }

    /// Waits until link `name` meets `condition`; returns it and when it was read.
    @discardableResult
    static func waitLink(port: Int, launcher: [String] = [], _ name: String, timeout: Duration = .seconds(30), agentLog: @autoclosure () -> String = "",
                         _ condition: (JSONValue) -> Bool) async throws -> (link: JSONValue, at: ContinuousClock.Instant) {
        let deadline = ContinuousClock.now + timeout
        var last: JSONValue?
        while ContinuousClock.now < deadline {
            if let s = try? status(port: port, launcher: launcher), let l = link(s, name) {
                let at = ContinuousClock.now
                last = l
                if condition(l) { return (l, at) }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestBedError("link \(name) did not get there within \(timeout); last: \(last.map { JSONText.serialize($0) } ?? "none"); log: \(agentLog().suffix(3000))")
    }

    /// Waits until the agent answers its heartbeat status.
    static func waitAgent(_ agent: AgentProcess, launcher: [String] = [], timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let code = Spawn.exited(agent.pid) { throw TestBedError("the agent exited (\(code)) at start: \(agent.logText.suffix(2000))") }
            if (try? status(port: agent.port, launcher: launcher)) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestBedError("the agent did not answer within \(timeout): \(agent.logText.suffix(2000))")
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
}
