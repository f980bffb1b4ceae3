import Foundation
import Glibc
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Billing that cannot be fooled: VMs that share an identity, two agents, histograms set
/// by someone else, VMs that die and leave their socket behind. Real QEMUs and a real agent.
@Suite(.serialized) struct IdentityTests {
    static let mib: UInt64 = 1 << 20

    /// Two running QEMUs with one `-uuid` (a cloned VM): each is billed exactly what its
    /// own guest wrote, the conflict is reported, and when one goes the other is billed on.
    @Test func twoRunningVMsWithOneUUIDAreEachBilledWhatTheirGuestDid() async throws {
        let bed = try TestBed(prefix: "clone")
        defer { bed.shutdown() }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        try await agent.waitReady()
        let original = try bed.launch(GuestSpec(name: "clone-a"))
        var cloneSpec = GuestSpec(name: "clone-b")
        cloneSpec.uuid = original.uuid
        let clone = try bed.launch(cloneSpec)
        try await original.waitReady()
        try await clone.waitReady()
        let shellA = try await original.shell()
        let shellB = try await clone.shell()

        let beforeA = try await LedgerReading.settled(original, dataDir: agent.dataDirectory, vm: "clone-a")
        let beforeB = try await LedgerReading.settled(clone, dataDir: agent.dataDirectory, vm: "clone-b")
        try await shellA.check("dd if=/dev/zero of=/dev/vda bs=1M count=16 oflag=direct")
        try await shellB.check("dd if=/dev/zero of=/dev/vda bs=1M count=8 oflag=direct")
        let afterA = try await LedgerReading.settled(original, dataDir: agent.dataDirectory, vm: "clone-a")
        let afterB = try await LedgerReading.settled(clone, dataDir: agent.dataDirectory, vm: "clone-b")
        #expect(afterA.delta(since: beforeA)[.writeBytes] == 16 * Self.mib)
        #expect(afterB.delta(since: beforeB)[.writeBytes] == 8 * Self.mib)
        // Both started after the ledger: each one's total is its own QEMU's counters, no more.
        #expect(afterA == (try await LedgerReading.qemu(original).counters))
        #expect(afterB == (try await LedgerReading.qemu(clone).counters))

        // Asking for the UUID gathers both VMs' rows, under every key they had.
        let byUUID = try LedgerReading.exported(dataDir: agent.dataDirectory, vm: original.uuid)
        #expect(byUUID[.writeBytes] == afterA[.writeBytes] + afterB[.writeBytes])
        // Each under a key of its own while both run, and the conflict in health and stats.
        let keys = try exportedKeys(agent.dataDirectory)
        #expect(keys.contains(original.uuid + "/clone-a.sock"), "\(keys)")
        #expect(keys.contains(original.uuid + "/clone-b.sock"), "\(keys)")
        let health = try agent.health()
        #expect(health.status == 503)
        let conflict = try #require(health.body["identity_conflicts"]?.arrayValue?.first)
        #expect(conflict["claim"]?.stringValue == original.uuid)
        #expect(conflict["sockets"]?.arrayValue?.compactMap(\.stringValue) == [original.socketPath, clone.socketPath])
        let stats = try Spawn.capture(LedgerReading.vmpulse, ["stats", "--agent", agent.address, "--json", "--group", "state", "clone-b"])
        let record = try #require(try StatsFormat.parseJSON(Array(stats.stdout.utf8)).first)
        #expect(record.errors.contains { $0.contains("identity") && $0.contains(original.socketPath) })
        #expect(agent.logText.components(separatedBy: "running VMs have the UUID \(original.uuid)").count - 1 == 1,
                "the conflict is logged once")

        // The clone goes: the original has its UUID to itself again, and is billed on exactly.
        await shellB.close()
        clone.stop()
        for _ in 0..<100 where (try? agent.health())?.status != 200 { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try agent.health().status == 200)
        try await shellA.check("dd if=/dev/zero of=/dev/vda bs=1M count=4 oflag=direct")
        let finalA = try await LedgerReading.settled(original, dataDir: agent.dataDirectory, vm: "clone-a")
        #expect(finalA.delta(since: afterA)[.writeBytes] == 4 * Self.mib)
        #expect(finalA == (try await LedgerReading.qemu(original).counters))
        #expect(try exportedKeys(agent.dataDirectory).contains(original.uuid))
        await shellA.close()
        #expect(try await agent.stop() == 0)
    }

    /// One agent per host: a second one on the same data directory refuses to start and
    /// names the first one's pid; `billing export` still runs beside the agent.
    @Test func aSecondAgentOnTheSameDataDirectoryIsRefused() async throws {
        let bed = try TestBed(prefix: "twoagents")
        defer { bed.shutdown() }
        let data = bed.directory + "/data"
        let first = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: data, directory: bed.directory)
        try await first.waitReady()
        let otherDir = bed.directory + "/second"
        try FileManager.default.createDirectory(atPath: otherDir, withIntermediateDirectories: true)
        let second = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: data, directory: otherDir)
        var code: Int32?
        for _ in 0..<100 {
            code = Spawn.exited(second.pid)
            if code != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(code == 1, "the second agent must exit at once with 1: \(second.logText)")
        #expect(second.logText.contains("another vmpulse agent (pid \(first.pid))"), "\(second.logText)")
        #expect(second.logText.contains(data))
        // The first one goes on, and billing export reads beside it.
        #expect(try first.health().status == 200)
        let export = try Spawn.capture(LedgerReading.vmpulse, ["billing", "export", "--data-dir", data, "--format", "json"])
        #expect(export.status == 0, "\(export.stderr)")
        // Once the first has stopped, an agent starts on the directory again.
        #expect(try await first.stop() == 0)
        let third = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: data, directory: otherDir)
        try await third.waitReady()
        #expect(try await third.stop() == 0)
    }

    /// QEMU takes histogram boundaries from any monitor (values near 2^64 included), and
    /// the agent reads whatever was set last: it must neither trap nor lie.
    @Test func histogramsSetByAnotherMonitorDoNotCrashTheAgent() async throws {
        let bed = try TestBed(prefix: "histo")
        defer { bed.shutdown() }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        try await agent.waitReady()
        let guest = try bed.launch(GuestSpec(name: "histo"))
        try await guest.waitReady()
        let shell = try await guest.shell()
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        // QEMU 7.2 refuses boundaries that do not increase (the scripted peer sends those:
        // QMPBackendTests); it takes any increasing list, up to 2^64 - 1.
        let lists: [[UInt64]] = [[1, UInt64.max - 1, UInt64.max], [UInt64.max], [1, 2]]
        // The id block-latency-histogram-set takes is the device's QOM path (`qdev`).
        let device = try #require(try await control.execute("query-blockstats").arrayValue?.first?["qdev"]?.stringValue)
        for boundaries in lists {
            // Wait until the agent has switched its own on, then override them (the agent sets
            // them once per connection), run I/O and read every window through the agent.
            _ = try await control.execute("block-latency-histogram-set",
                                          arguments: ["id": .string(device), "boundaries": .array(boundaries.map { .uint($0) })])
            let reply = try await control.execute("query-blockstats")
            let set = reply.arrayValue?.first?["stats"]?["wr_latency_histogram"]?["boundaries"]?.arrayValue?.compactMap(\.uint64Value)
            #expect(set == boundaries, "QEMU kept the boundaries as given")
            try await Task.sleep(for: .milliseconds(1500))  // the agent samples the new boundaries
            // Read every window through the agent while the guest writes a block every 0.3 s,
            // until the 1 s window has a percentile from the new histogram. With so few writes
            // the p99 is the top of its bin, 2^64 as a double: the old code trapped on it.
            let writer = Task {
                try await shell.check("i=0; while [ $i -lt 25 ]; do dd if=/dev/zero of=/dev/vda bs=4k count=1 oflag=direct 2>/dev/null; sleep 0.3; i=$((i+1)); done")
            }
            var p99: String?
            for _ in 0..<40 where p99 == nil {
                try await Task.sleep(for: .milliseconds(300))
                let stats = try Spawn.capture(LedgerReading.vmpulse, ["stats", "--agent", agent.address, "--json", "--group", "io", "histo"])
                #expect(stats.status == 0, "\(stats.stderr)")
                let record = try #require(try StatsFormat.parseJSON(Array(stats.stdout.utf8)).first)
                #expect(record.source == "agent")
                p99 = record["io.0.write_latency_p99_ns.1s"]?.text
            }
            _ = try await writer.value
            let estimate = try #require(p99.flatMap { UInt64($0) }, "no p99 with boundaries \(boundaries)")
            #expect(estimate <= boundaries.last ?? 0 || boundaries.count == 2, "an estimate inside the boundaries")
            #expect(Spawn.exited(agent.pid) == nil, "the agent died: \(agent.logText.suffix(2000))")
        }
        await control.close()
        await shell.close()
        #expect(try await agent.stop() == 0)
    }

    /// A QEMU killed with SIGKILL leaves its socket behind: the agent drops the VM and says
    /// so once, not every second; a new QEMU on the same path is picked up again.
    @Test func aVMWhoseQEMUWasKilledIsReportedGoneOnce() async throws {
        let bed = try TestBed(prefix: "gone")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "doomed")
        spec.paused = true
        let guest = try bed.launch(spec)
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        try await agent.waitReady()
        for _ in 0..<50 where (try? agent.health())?.body["vms"]?.int64Value != 1 { try await Task.sleep(for: .milliseconds(100)) }
        guest.signal(SIGKILL)
        while guest.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(FileManager.default.fileExists(atPath: guest.socketPath), "the killed QEMU left its socket")
        try await Task.sleep(for: .seconds(4))  // eight passes at the agent's 0.5 s interval
        let said = agent.logText.components(separatedBy: "nothing listens on \(guest.socketPath)").count - 1
        #expect(said == 1, "\(agent.logText.suffix(2000))")
        #expect(try agent.health().body["vms"]?.int64Value == 0)
        // A QEMU started again on the same path replaces the socket and is a VM again.
        _ = try bed.launch(spec)
        var vms: Int64?
        for _ in 0..<100 {
            vms = try agent.health().body["vms"]?.int64Value
            if vms == 1 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(vms == 1)
        #expect(try await agent.stop() == 0)
    }

    /// The ledger keys `billing export` shows.
    func exportedKeys(_ dataDir: String) throws -> Set<String> {
        let out = try Spawn.capture(LedgerReading.vmpulse, ["billing", "export", "--data-dir", dataDir, "--format", "json"])
        guard out.status == 0, let rows = try JSONParser.parse(Array(out.stdout.utf8)).arrayValue else {
            throw TestBedError("billing export failed (\(out.status)): \(out.stderr)")
        }
        return Set(rows.compactMap { $0["vm_uuid"]?.stringValue })
    }
}
