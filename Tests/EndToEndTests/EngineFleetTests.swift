import Foundation
import Glibc
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// `vmpulse engine` against two real agents, each watching real guests, on two ports.
@Suite(.serialized) struct EngineFleetTests {
    /// Waits until `done` holds for the engine's status, or fails with the last one.
    static func waitStatus(_ engine: EngineProcess, timeout: Duration = .seconds(30), _ what: String,
                           _ done: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var last: JSONValue = .null
        while ContinuousClock.now < deadline {
            if let s = try? engine.status() {
                last = s
                if done(s) { return s }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestBedError("the engine's status never showed \(what) within \(timeout): \(JSONText.serialize(last).prefix(2000))\n\(engine.logText.suffix(2000))")
    }

    static func host(_ s: JSONValue, _ name: String) -> JSONValue? {
        s["hosts"]?.arrayValue?.first { $0["name"]?.stringValue == name }
    }

    static func vm(_ s: JSONValue, _ uuid: String) -> JSONValue? {
        s["vms"]?.arrayValue?.first { $0["uuid"]?.stringValue == uuid }
    }

    /// Two agents, the engine's view of both; one agent stops and is stale within two polls
    /// while the other's data keeps coming; it recovers when the agent is back.
    static func fleet(database: (String) throws -> String) async throws {
        let bedA = try TestBed(prefix: "fleet-a"), bedB = try TestBed(prefix: "fleet-b")
        defer {
            bedA.shutdown()
            bedB.shutdown()
        }
        let a1 = try bedA.launch(GuestSpec(name: "fleet-a1"))
        let b1 = try bedB.launch(GuestSpec(name: "fleet-b1"))
        let agentA = try AgentProcess(socketDirectory: bedA.socketDirectory, dataDirectory: bedA.directory + "/data", directory: bedA.directory,
                                      fullInterval: 1)
        let agentB = try AgentProcess(socketDirectory: bedB.socketDirectory, dataDirectory: bedB.directory + "/data", directory: bedB.directory,
                                      fullInterval: 1)
        try await agentA.waitReady()
        try await agentB.waitReady()
        try await a1.waitReady()
        try await b1.waitReady()
        let engine = try EngineProcess(agents: [("host-a", agentA.address), ("host-b", agentB.address)], database: try database(bedA.directory),
                                       directory: bedA.directory, runtimeInterval: 1, timeout: 1)
        // The engine's view matches both agents: each VM on its host, Up, named (from VM.getConfInfo).
        var s = try await waitStatus(engine, "both hosts up with their VMs named") { s in
            [("host-a", a1), ("host-b", b1)].allSatisfy { h, g in
                host(s, h)?["state"] == "up" && vm(s, g.uuid)?["host"]?.stringValue == h && vm(s, g.uuid)?["name"]?.stringValue == g.name
                    && vm(s, g.uuid)?["status"] == "Up"
            }
        }
        for (agent, h) in [(agentA, "host-a"), (agentB, "host-b")] {
            let runtime = try #require(try agent.result("Host.getAllVmRuntimeStats").objectValue)
            let onHost = Set((s["vms"]?.arrayValue ?? []).filter { $0["host"]?.stringValue == h }.compactMap { $0["uuid"]?.stringValue })
            #expect(onHost == Set(runtime.keys), "\(h): the engine's VMs are the agent's")
            #expect(host(s, h)?["vmCount"]?.int64Value == Int64(runtime.count))
        }
        s = try await waitStatus(engine, "CPU figures") { s in vm(s, a1.uuid)?["cpuUser"] != nil && vm(s, b1.uuid)?["cpuUser"] != nil }

        // B stops: stale within two polls, each at most its interval and its timeout (1 s and
        // 1 s), and a second for reading the status with a process of its own.
        #expect(try await agentB.stop() == 0)
        let stopped = ContinuousClock.now
        s = try await waitStatus(engine, timeout: .seconds(10), "host-b stale") { host($0, "host-b")?["state"] == "stale" }
        let took = ContinuousClock.now - stopped
        #expect(took < .seconds(5), "stale after \(took): \(engine.logText.suffix(3000))")
        #expect(try engine.command(["status"]).status == 3, "a stale host: exit 3")
        // A's data keeps coming meanwhile; B's VM keeps its last view, on B.
        try await Task.sleep(for: .seconds(2))
        s = try engine.status()
        #expect(host(s, "host-a")?["state"] == "up")
        #expect((vm(s, a1.uuid)?["seenAge"]?.doubleValue ?? 99) < 3, "host-a's VM is fresh: \(vm(s, a1.uuid) ?? .null)")
        #expect(vm(s, b1.uuid)?["host"] == "host-b")
        #expect(host(s, "host-b")?["problem"]?.stringValue?.contains("host-b") == true)

        // B is back: up again, with its VM.
        try agentB.start()
        try await agentB.waitReady()
        s = try await waitStatus(engine, timeout: .seconds(20), "host-b up again") { s in
            host(s, "host-b")?["state"] == "up" && (vm(s, b1.uuid)?["seenAge"]?.doubleValue ?? 99) < 3
        }
        #expect(try engine.command(["status"]).status == 0)
        let text = try engine.command(["status"]).stdout
        #expect(text.contains("fleet-a1") && text.contains("fleet-b1") && text.contains("host-b"))
        #expect(try await engine.stop() == 0, "\(engine.logText.suffix(2000))")
        _ = try await agentA.stop()
        _ = try await agentB.stop()
    }

    @Test func twoAgentsOnSQLite() async throws {
        try await Self.fleet { dir in dir + "/fleet.sqlite" }
    }

    @Test func twoAgentsOnPostgreSQL() async throws {
        let pg = try PostgresServer(directory: "/tmp/vmpulse-pg-\(UUID().uuidString.prefix(8))")
        defer { pg.shutdown() }
        try await Self.fleet { _ in pg.url }
        #expect(try pg.psql("SELECT count(*) FROM hosts") == "2\n", "the view is in PostgreSQL")
        #expect(try pg.psql("SELECT value FROM fleet_meta WHERE key = 'schema_version'") == "1\n")
    }

    /// A pause pushed by the agent's events reaches the fleet store long before the next poll.
    @Test func aPauseIsSeenFromTheAgentsEventsBeforeTheNextPoll() async throws {
        let bed = try TestBed(prefix: "fleet-ev")
        defer { bed.shutdown() }
        let guest = try bed.launch(GuestSpec(name: "fleet-ev1"))
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     fullInterval: 1)
        try await agent.waitReady()
        try await guest.waitReady()
        let db = bed.directory + "/fleet.sqlite"
        let engine = try EngineProcess(agents: [("host-a", agent.address)], database: db, directory: bed.directory, runtimeInterval: 60, timeout: 2)
        _ = try await Self.waitStatus(engine, "the VM Up") { Self.vm($0, guest.uuid)?["status"] == "Up" }
        try await Task.sleep(for: .seconds(1))  // the subscription is made
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        _ = try await control.execute("stop")
        let paused = ContinuousClock.now
        _ = try await Self.waitStatus(engine, timeout: .seconds(10), "Paused") { Self.vm($0, guest.uuid)?["status"] == "Paused" }
        #expect(ContinuousClock.now - paused < .seconds(5), "seen from the event, not the poll 60 s later")
        let changes = try Spawn.capture("/usr/bin/sqlite3", [db, "SELECT to_status || ':' || source FROM status_changes WHERE uuid = '\(guest.uuid)' ORDER BY at"])
        #expect(changes.stdout == "Up:poll\nPaused:event\n", "\(changes.stdout) \(changes.stderr)")
        _ = try await control.execute("cont")
        await control.close()
        #expect(try await engine.stop() == 0)
        _ = try await agent.stop()
    }

    /// The database goes away mid-run: the engine keeps polling, says the store is degraded,
    /// keeps the status changes it sees, and writes them when the server is back.
    @Test func aStoreThatGoesAwayAndComesBackLosesNoStatusChange() async throws {
        let pg = try PostgresServer(directory: "/tmp/vmpulse-pg-\(UUID().uuidString.prefix(8))")
        defer { pg.shutdown() }
        let bed = try TestBed(prefix: "fleet-pg")
        defer { bed.shutdown() }
        let guest = try bed.launch(GuestSpec(name: "fleet-pg1"))
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     fullInterval: 1)
        try await agent.waitReady()
        try await guest.waitReady()
        let engine = try EngineProcess(agents: [("host-a", agent.address)], database: pg.url, directory: bed.directory, runtimeInterval: 0.5, timeout: 1)
        _ = try await Self.waitStatus(engine, "the VM Up") { Self.vm($0, guest.uuid)?["status"] == "Up" }

        try pg.stop()
        #expect(try engine.command(["status"]).status == 1, "no store, no status: exit 1")
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        _ = try await control.execute("stop")
        // The engine sees the pause while the store is away, and says so.
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline, !engine.logText.contains("fleet store degraded") {
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(engine.logText.contains("fleet store degraded"), "\(engine.logText.suffix(2000))")
        try await Task.sleep(for: .seconds(2))
        #expect(Spawn.exited(engine.pid) == nil, "the engine keeps running")

        try pg.start()
        let s = try await Self.waitStatus(engine, timeout: .seconds(20), "the pause after the store is back") { s in
            Self.vm(s, guest.uuid)?["status"] == "Paused" && Self.host(s, "host-a")?["state"] == "up"
        }
        #expect(Self.vm(s, guest.uuid)?["host"] == "host-a")
        let changes = try pg.psql("SELECT coalesce(from_status, '-') || '>' || to_status FROM status_changes WHERE uuid = '\(guest.uuid)' ORDER BY at")
        #expect(changes == "->Up\nUp>Paused\n", "the change seen while the store was away is there: \(changes)")
        #expect(engine.logText.contains("fleet store works again"))
        _ = try await control.execute("cont")
        await control.close()
        #expect(try await engine.stop() == 0)
        _ = try await agent.stop()
    }

    /// A guest writes a known number of bytes while the engine is killed with SIGKILL again
    /// and again in the middle of its copies: the fleet's export holds every byte once.
    @Test func centralBillingCountsEveryByteOnceThroughSIGKILLs() async throws {
        let bed = try TestBed(prefix: "fleet-bill")
        defer { bed.shutdown() }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        try await agent.waitReady()
        let guest = try bed.launch(GuestSpec(name: "fleet-billed"))
        try await guest.waitReady()
        let shell = try await guest.shell()
        let engine = try EngineProcess(agents: [("host-a", agent.address)], database: bed.directory + "/fleet.sqlite", directory: bed.directory,
                                       runtimeInterval: 0.5, billingInterval: 0.2, timeout: 1)
        let before = try await LedgerReading.settled(guest, dataDir: agent.dataDirectory, vm: guest.name)
        // 48 MiB in 1 MiB writes, spread over some seconds, while the engine is killed and restarted.
        try await shell.check("(i=0; while [ $i -lt 48 ]; do dd if=/dev/zero of=/dev/vda bs=1M count=1 seek=$i oflag=direct 2>/dev/null; i=$((i+1)); sleep 0.1; done; touch /tmp/done) >/dev/null 2>&1 &")
        for _ in 0..<6 {
            try await Task.sleep(for: .milliseconds(Int64.random(in: 300...1200)))
            try await engine.killHard()
            try engine.start()
        }
        _ = try await shell.check("while [ ! -e /tmp/done ]; do sleep 0.2; done; echo ok", timeout: .seconds(120))
        let after = try await LedgerReading.settled(guest, dataDir: agent.dataDirectory, vm: guest.name)
        #expect(after.delta(since: before)[.writeBytes] == 48 << 20)
        // The engine's export, summed by VM, comes to the ledger's totals exactly.
        let deadline = ContinuousClock.now + .seconds(30)
        var fleet = BlockCounters()
        while ContinuousClock.now < deadline {
            fleet = try Self.exported(engine, vm: guest.uuid, by: "vm")
            if fleet == after { break }
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(fleet == after, "engine \(fleet[.writeBytes]) against the ledger's \(after[.writeBytes]) written bytes")
        // Per host the same rows (one host here), and the same as the agent's own export.
        #expect(try Self.exported(engine, vm: guest.uuid, by: "host") == after)
        let agentCSV = try Spawn.capture(LedgerReading.vmpulse, ["billing", "export", "--data-dir", agent.dataDirectory, "--vm", guest.uuid]).stdout
        let engineCSV = try engine.command(["billing", "export", "--vm", guest.uuid]).stdout
        let engineRows: [String] = engineCSV.split(separator: "\n").dropFirst().map { line in
            line.split(separator: ",", maxSplits: 1).last.map(String.init) ?? ""
        }
        let agentRows: [String] = agentCSV.split(separator: "\n").dropFirst().map(String.init)
        #expect(engineRows == agentRows, "the engine's rows are the agent's, with the host first")
        #expect(engineCSV.hasPrefix("host,vm_uuid,vm_name,disk,"))
        await shell.close()
        #expect(try await engine.stop() == 0)
        _ = try await agent.stop()
    }

    /// The totals of `vmpulse engine billing export --format json` for one VM.
    static func exported(_ engine: EngineProcess, vm: String, by: String) throws -> BlockCounters {
        let r = try engine.command(["billing", "export", "--format", "json", "--vm", vm, "--by", by])
        guard r.status == 0 else { throw TestBedError("engine billing export exited \(r.status): \(r.stderr)\n\(engine.logText.suffix(3000))") }
        var total = BlockCounters()
        for row in try JSONParser.parse(Array(r.stdout.utf8)).arrayValue ?? [] {
            var c = BlockCounters()
            for counter in IOCounter.allCases { c[counter] = row[counter.name]?.uint64Value ?? 0 }
            total = total.addingReportingOverflow(c).0
        }
        return total
    }
}
