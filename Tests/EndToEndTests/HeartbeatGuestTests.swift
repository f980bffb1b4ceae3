import Foundation
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// A heartbeat link to a real guest's qemu-ga (`guest-ping`): pausing the guest with QMP
/// `stop` makes the link dead, and its configured `cont` reaches that VM, as QEMU's own
/// state shows; the guest answers again and the link comes back.
@Suite(.serialized) struct HeartbeatGuestTests {
    @Test func aPausedGuestIsDeadAndItsConfiguredContResumesIt() async throws {
        let bed = try TestBed(prefix: "hb-guest")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "hb-g1")
        spec.guestAgent = true
        let guest = try bed.launch(spec)
        let other = try bed.launch(GuestSpec(name: "hb-g2"))
        try await guest.waitReady()
        try await other.waitReady()
        let runs = bed.directory + "/runs.txt"
        let recorder = try HeartbeatFixture.recorder(in: bed.directory, file: runs)
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory, extraYAML: """
            heartbeat:
              links:
                - name: db-guest
                  guest: hb-g1
                  interval: 0.5
                  timeout: 2.5
                  on_dead: [{vm: hb-g1, command: cont}]
                  on_alive: [{program: \(recorder), args: [alive]}]
            """)
        try await agent.waitReady()
        try await HeartbeatFixture.waitLink(port: agent.port, "db-guest", timeout: .seconds(60), agentLog: agent.logText) {
            ($0["pulses"]?.uint64Value ?? 0) >= 3 && $0["state"] == "alive"
        }

        // The `heartbeat` group: in the record of the VM the link watches, not the other's.
        let stats = try JSONParser.parse(Array(try HTTPGet.fetch(port: agent.port, path: "/v1/stats?group=heartbeat").body.utf8))
        let records = stats.arrayValue ?? []
        let mine = records.first { $0["name"] == "hb-g1" }?["params"]
        #expect(mine?["heartbeat.count"]?.uint64Value == 1, "\(stats)")
        #expect(mine?["heartbeat.0.name"] == "db-guest" && mine?["heartbeat.0.state"] == "alive" && mine?["heartbeat.0.kind"] == "guest", "\(stats)")
        #expect((mine?["heartbeat.0.pulses"]?.uint64Value ?? 0) >= 3)
        let theirs = records.first { $0["name"] == "hb-g2" }?["params"]?.objectValue ?? [:]
        #expect(!theirs.keys.contains { $0.hasPrefix("heartbeat.") }, "\(theirs)")

        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        defer { Task { await control.close() } }
        _ = try await control.execute("stop")
        let paused = ContinuousClock.now
        try await HeartbeatFixture.waitLink(port: agent.port, "db-guest", timeout: .seconds(15), agentLog: agent.logText) { $0["state"] == "dead" }
        // The action's `cont` reaches the VM: QEMU runs it again.
        var status = ""
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            status = try await control.execute("query-status")["status"]?.stringValue ?? ""
            if status == "running" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(status == "running", "QEMU says \(status) \(HeartbeatFixture.seconds(ContinuousClock.now - paused)) s after the pause")
        let back = try await HeartbeatFixture.waitLink(port: agent.port, "db-guest", timeout: .seconds(20), agentLog: agent.logText) { $0["state"] == "alive" }.link
        let actions = back["recent_actions"]?.arrayValue ?? []
        #expect(actions.contains { $0["action"] == "cont to VM hb-g1" && $0["transition"] == "suspect->dead" && $0["succeeded"] == true }, "\(actions)")
        try await Task.sleep(for: .seconds(1))
        #expect(HeartbeatFixture.runs(runs).map(\.arg) == ["alive"], "the recovery ran once")
        #expect((back["failed_probes"]?.uint64Value ?? 0) >= 1, "the pings that timed out are counted: \(back)")
        try await agent.stop()
    }
}
