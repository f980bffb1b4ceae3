import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The agent with a ledger it cannot use: it keeps sampling and serving stats,
/// reports the ledger as degraded, and loses nothing recorded before.
@Suite(.serialized) struct AgentFaultTests {
    func pausedGuest(_ name: String) -> GuestSpec {
        var spec = GuestSpec(name: name)
        spec.paused = true
        return spec
    }

    /// Stats for `vm` through the agent, as a user gets them.
    func statsViaAgent(_ agent: AgentProcess, _ vm: String) throws -> StatsRecord? {
        let out = try Spawn.capture(LedgerReading.vmpulse, ["stats", "--agent", agent.address, "--json", "--group", "state,io", vm])
        guard out.status == 0 else { return nil }
        return try StatsFormat.parseJSON(Array(out.stdout.utf8)).first
    }

    func waitDegraded(_ agent: AgentProcess, containing text: String) async throws -> String {
        var last = ""
        for _ in 0..<100 {
            if let h = try? agent.health(), h.status == 503, let problem = h.body["ledger"]?["problem"]?.stringValue {
                last = problem
                if problem.contains(text) { return problem }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestBedError("the agent never reported a degraded ledger containing '\(text)' (last: \(last))")
    }

    func tmpfs(size: String) throws -> String {
        let mount = "/tmp/vmpulse-fs-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        guard system("mount -t tmpfs -o size=\(size) tmpfs \(mount)") == 0 else { throw TestBedError("cannot mount a tmpfs (root needed)") }
        return mount
    }

    func unmount(_ mount: String) {
        _ = system("umount \(mount)")
        try? FileManager.default.removeItem(atPath: mount)
    }

    @Test func aCorruptLedgerIsLeftAloneWhileStatsGoOn() async throws {
        let bed = try TestBed(prefix: "corrupt")
        defer { bed.shutdown() }
        let data = bed.directory + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let garbage = Data((0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
        try garbage.write(to: URL(fileURLWithPath: data + "/ledger.sqlite"))
        try bed.launch(pausedGuest("steady"))
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: data, directory: bed.directory)
        try await agent.waitReady()
        let problem = try await waitDegraded(agent, containing: "not a valid SQLite database")
        #expect(problem.contains(data + "/ledger.sqlite"))
        let record = try #require(try statsViaAgent(agent, "steady"))
        #expect(record["state.monitor-response"] == .int(0))
        #expect(record["io.0.write_bytes"] != nil)
        #expect(try await agent.stop() == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: data + "/ledger.sqlite")) == garbage)
        #expect(agent.logText.contains("ledger degraded"))
    }

    @Test func aReadOnlyLedgerIsReportedAndKeepsItsRows() async throws {
        let bed = try TestBed(prefix: "rofs")
        defer { bed.shutdown() }
        let mount = try tmpfs(size: "8m")
        defer { unmount(mount) }
        try bed.launch(pausedGuest("quiet"))
        // A first agent writes the ledger ...
        var agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: mount, directory: bed.directory)
        try await agent.waitReady()
        try await Task.sleep(for: .seconds(2))
        try await agent.stop()
        let before = try LedgerReading.exported(dataDir: mount, vm: "quiet")
        let rows = try Spawn.capture(LedgerReading.vmpulse, ["billing", "export", "--data-dir", mount]).stdout
        #expect(rows.split(separator: "\n").count == 2)
        // ... then its file system turns read-only under the next one.
        #expect(system("mount -o remount,ro \(mount)") == 0)
        agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: mount, directory: bed.directory)
        try await agent.waitReady()
        _ = try await waitDegraded(agent, containing: mount + "/ledger.sqlite")
        #expect(try statsViaAgent(agent, "quiet")?["state.monitor-response"] == .int(0))
        #expect(try await agent.stop() == 0)
        #expect(system("mount -o remount,rw \(mount)") == 0)
        #expect(try LedgerReading.exported(dataDir: mount, vm: "quiet") == before)
    }

    @Test func aFullDiskDegradesTheLedgerAndNothingIsLostWhenSpaceReturns() async throws {
        let bed = try TestBed(prefix: "full")
        defer { bed.shutdown() }
        let mount = try tmpfs(size: "1m")
        defer { unmount(mount) }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: mount, directory: bed.directory)
        try await agent.waitReady()
        let guest = try bed.launch(GuestSpec(name: "writer"))
        try await guest.waitReady()
        let before = try await LedgerReading.settled(guest, dataDir: mount, vm: "writer")
        // Fill the file system, then write in the guest while the ledger cannot grow.
        _ = system("dd if=/dev/zero of=\(mount)/filler bs=4k 2>/dev/null")
        let shell = try await guest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=16 oflag=direct")
        _ = try await waitDegraded(agent, containing: "full")
        #expect(try statsViaAgent(agent, "writer")?["state.monitor-response"] == .int(0))
        // Space comes back: what was pending is written, to the byte.
        try FileManager.default.removeItem(atPath: mount + "/filler")
        let after = try await LedgerReading.settled(guest, dataDir: mount, vm: "writer")
        #expect(after.delta(since: before)[.writeBytes] == 16 << 20)
        #expect(try agent.health().status == 200)
        await shell.close()
        try await agent.stop()
    }

    @Test func aBadConfigurationIsRefusedWithTheKey() throws {
        let dir = "/tmp/vmpulse-cfg-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "sampler:\n  interval: soon\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let out = try Spawn.capture(LedgerReading.vmpulse, ["agent", "--config", dir + "/bad.yaml"])
        #expect(out.status == 1)
        #expect(out.stderr.contains("\(dir)/bad.yaml: 'sampler.interval': expected a number of seconds, got 'soon'"))
        try "ledger:\n  perod: 60\n".write(toFile: dir + "/typo.yaml", atomically: true, encoding: .utf8)
        let typo = try Spawn.capture(LedgerReading.vmpulse, ["agent", "--config", dir + "/typo.yaml"])
        #expect(typo.status == 1)
        #expect(typo.stderr.contains("'ledger.perod': unknown key"))
    }
}
