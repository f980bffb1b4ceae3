import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Two real agents in two network namespaces joined by a veth pair, heartbeating over
/// TCP with the fixed detector (1 s pulses, 5 s timeout: the proposal's example).
@Suite(.serialized) struct HeartbeatPeerTests {
    @Test func aCutLinkIsDeadWithinTimeoutPlusAnIntervalAndItsActionsRunOnceEachWay() async throws {
        let pair = try NetnsPair()
        defer { pair.remove() }
        let bedA = try TestBed(prefix: "hb-a"), bedB = try TestBed(prefix: "hb-b")
        defer {
            bedA.shutdown()
            bedB.shutdown()
        }
        let key = try HeartbeatFixture.keyFile(in: bedA.directory)
        try FileManager.default.copyItem(atPath: key, toPath: bedB.directory + "/heartbeat.key")
        let runsA = bedA.directory + "/runs.txt"
        let recorder = try HeartbeatFixture.recorder(in: bedA.directory, file: runsA)
        let port = 9791
        let yamlA = """
            heartbeat:
              name: host-a
              key_file: \(key)
              links:
                - name: to-b
                  peer: host-b
                  listen: \(pair.addressA):\(port)
                  interval: 1
                  timeout: 5
                  on_dead: [{program: \(recorder), args: [dead], timeout: 10}]
                  on_alive: [{program: \(recorder), args: [alive], timeout: 10}]
            """
        let yamlB = """
            heartbeat:
              name: host-b
              key_file: \(bedB.directory)/heartbeat.key
              links:
                - name: to-a
                  peer: host-a
                  connect: \(pair.addressA):\(port)
            """
        let a = try AgentProcess(socketDirectory: bedA.socketDirectory, dataDirectory: bedA.directory + "/data", directory: bedA.directory,
                                 extraYAML: yamlA, launcher: pair.exec(pair.a))
        let b = try AgentProcess(socketDirectory: bedB.socketDirectory, dataDirectory: bedB.directory + "/data", directory: bedB.directory,
                                 extraYAML: yamlB, launcher: pair.exec(pair.b))
        let inA = pair.exec(pair.a), inB = pair.exec(pair.b)
        try await HeartbeatFixture.waitAgent(a, launcher: inA)
        try await HeartbeatFixture.waitAgent(b, launcher: inB)
        try await HeartbeatFixture.waitLink(port: a.port, launcher: inA, "to-b", agentLog: a.logText) { ($0["pulses"]?.uint64Value ?? 0) >= 3 }
        try await HeartbeatFixture.waitLink(port: b.port, launcher: inB, "to-a", agentLog: b.logText) { ($0["pulses"]?.uint64Value ?? 0) >= 3 && $0["state"] == "alive" }
        #expect(HeartbeatFixture.runs(runsA).isEmpty, "nothing ran while the link was up")

        // The cut.
        try pair.cut()
        let cut = ContinuousClock.now
        let (dead, seen) = try await HeartbeatFixture.waitLink(port: a.port, launcher: inA, "to-b", timeout: .seconds(15), agentLog: a.logText) { $0["state"] == "dead" }
        let detected = HeartbeatFixture.seconds(seen - cut) - (dead["state_seconds"]?.doubleValue ?? 0)
        #expect(detected <= 5 + 1, "dead \(detected) s after the cut: within timeout plus one interval")
        #expect(detected >= 5 - 1 - 0.1, "not before the timeout: \(detected) s")
        try await HeartbeatFixture.waitLink(port: b.port, launcher: inB, "to-a", timeout: .seconds(15)) { $0["state"] == "dead" }
        try await Task.sleep(for: .seconds(2))
        var runs = HeartbeatFixture.runs(runsA)
        #expect(runs.map(\.arg) == ["dead"], "the dead action ran exactly once: \(runs.map(\.arg))")
        let fields = runs.first?.fields ?? [:]
        #expect(fields["link"] == "to-b" && fields["state"] == "dead" && fields["previous"] == "suspect" && fields["host"] == "host-a", "\(fields)")
        #expect(fields["target"] == "host-b@\(pair.addressA):\(port)" && fields["kind"] == "peer", "\(fields)")

        // The link is back: alive again, and the recovery action runs once.
        try pair.restore()
        let restored = ContinuousClock.now
        try await HeartbeatFixture.waitLink(port: a.port, launcher: inA, "to-b", timeout: .seconds(20), agentLog: a.logText) { $0["state"] == "alive" }
        let back = HeartbeatFixture.seconds(ContinuousClock.now - restored)
        try await HeartbeatFixture.waitLink(port: b.port, launcher: inB, "to-a", timeout: .seconds(20)) { $0["state"] == "alive" }
        try await Task.sleep(for: .seconds(3))
        runs = HeartbeatFixture.runs(runsA)
        #expect(runs.map(\.arg) == ["dead", "alive"], "each action ran once: \(runs.map(\.arg))")
        #expect(runs.last?.fields["previous"] == "dead")
        #expect(back <= 10, "alive \(back) s after the link came back (a reconnect within 2 s, then 3 pulses)")

        // The outcomes are in the status and in the agent's store.
        let status = try #require(HeartbeatFixture.link(try HeartbeatFixture.status(port: a.port, launcher: inA), "to-b"))
        let actions = status["recent_actions"]?.arrayValue ?? []
        #expect(actions.map { $0["transition"]?.stringValue ?? "" } == ["dead->alive", "suspect->dead"], "\(actions)")
        #expect(actions.allSatisfy { $0["succeeded"] == true && $0["code"]?.int64Value == 0 }, "\(actions)")
        #expect(status["actions_run"]?.uint64Value == 2 && status["actions_failed"]?.uint64Value == 0)
        #expect(status["rejected"]?.uint64Value == 0, "a real peer's frames are all taken: \(status)")
        try await a.stop()
        try await b.stop()
        let log = try Spawn.capture("/usr/bin/sqlite3", [bedA.directory + "/data/heartbeat.sqlite", "SELECT transition, action, succeeded, code FROM heartbeat_actions ORDER BY id"])
        #expect(log.stdout == "suspect->dead|program \(recorder)|1|0\ndead->alive|program \(recorder)|1|0\n", "\(log.stdout) \(log.stderr)")
    }
}
