import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Billing-grade accounting against real guests and a real agent process.
@Suite(.serialized) struct AccountingTests {
    static let mib: UInt64 = 1 << 20

    func setUp(_ prefix: String) throws -> (TestBed, AgentProcess) {
        let bed = try TestBed(prefix: prefix)
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        return (bed, agent)
    }

    @Test func theLedgerHoldsExactlyWhatTheGuestReadAndWrote() async throws {
        let (bed, agent) = try setUp("acct")
        defer { bed.shutdown() }
        try await agent.waitReady()
        let guest = try bed.launch(GuestSpec(name: "billed"))
        try await guest.waitReady()
        let shell = try await guest.shell()
        // What the guest's boot read is in the ledger too: measure it first.
        let before = try await LedgerReading.settled(guest, dataDir: agent.dataDirectory, vm: "billed")
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=64 oflag=direct")
        try await shell.check("dd if=/dev/vda of=/dev/null bs=1M count=32 iflag=direct")
        let after = try await LedgerReading.settled(guest, dataDir: agent.dataDirectory, vm: "billed")
        let d = after.delta(since: before)
        #expect(d[.writeBytes] == 64 * Self.mib)
        #expect(d[.readBytes] == 32 * Self.mib)
        #expect(d[.writeIOs] == 64)
        #expect(d[.readIOs] == 32)
        #expect(d[.writeIOsError] == 0 && d[.invalidWriteIOs] == 0)
        // The ledger starts from zero for a QEMU started after it: its totals are QEMU's counters.
        #expect(after == (try await LedgerReading.qemu(guest).counters))

        // The same records as CSV.
        let csv = try Spawn.capture(LedgerReading.vmpulse, ["billing", "export", "--data-dir", agent.dataDirectory, "--format", "csv", "--vm", guest.uuid])
        let lines = csv.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("vm_uuid,vm_name,disk,disk_path,period_start,period_end,samples,read_bytes,write_bytes,") == true)
        let column = lines.first?.split(separator: ",").firstIndex(of: "write_bytes") ?? 0
        let csvWrites = lines.dropFirst().compactMap { UInt64($0.split(separator: ",", omittingEmptySubsequences: false)[column]) }.reduce(0, +)
        #expect(csvWrites == after[.writeBytes])

        // vmpulse stats answers from the agent's snapshot, with the io windows.
        let stats = try Spawn.capture(LedgerReading.vmpulse, ["stats", "--agent", agent.address, "--json", "--group", "io,state", "billed"])
        #expect(stats.status == 0, "\(stats.stderr)")
        let record = try #require(try StatsFormat.parseJSON(Array(stats.stdout.utf8)).first)
        #expect(record.source == "agent")
        #expect((record.statsAge ?? 99) < 5)
        #expect(record["io.0.write_bytes"]?.text == String((try await LedgerReading.qemu(guest)).counters[.writeBytes]))
        #expect(record["io.0.write_latency_avg_ns.1m"] != nil)
        #expect(record["io.0.write_queue_depth_avg.1m"] != nil)
        #expect(record["io.0.write_latency_p99_ns.1m"] != nil)
        await shell.close()
        let code = try await agent.stop()
        #expect(code == 0, "the agent exited \(code): \(agent.logText.suffix(3000))")
    }

    /// On both backends: the agent is SIGKILLed in the middle of a workload and started again.
    @Test(arguments: TestBackend.allCases)
    func anAgentKilledMidWorkloadLosesNothingAndCountsNothingTwice(backend: TestBackend) async throws {
        let bed = try backend.makeBed(prefix: "kill")
        defer { bed.shutdown() }
        let agent = try bed.agent()
        try await agent.waitReady()
        let guest = try bed.launch(GuestSpec(name: "killed"))
        try await guest.waitReady()
        let shell = try await guest.shell()
        let before = try await LedgerReading.settled(guest, dataDir: agent.dataDirectory, vm: "killed")
        // 64 MiB written in the background, 1 MiB at a time, while the agent dies and comes back.
        try await shell.check("(i=0; while [ $i -lt 64 ]; do dd if=/dev/zero of=/dev/vda bs=1M count=1 seek=$i oflag=direct 2>/dev/null; i=$((i+1)); sleep 0.1; done; touch /tmp/done) >/dev/null 2>&1 &")
        try await Task.sleep(for: .seconds(2))
        try await agent.killHard()
        try await Task.sleep(for: .seconds(2))
        try agent.start()
        try await agent.waitReady()
        for _ in 0..<200 {
            if (try? await shell.check("test -e /tmp/done")) != nil { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        try await shell.check("test -e /tmp/done")
        let after = try await LedgerReading.settled(guest, dataDir: agent.dataDirectory, vm: "killed")
        #expect(after.delta(since: before)[.writeBytes] == 64 * Self.mib)
        // Separate dd runs may be split into more requests by the guest's kernel: the operation
        // count is checked against QEMU's own (settled() waits for ledger == QEMU), not against 64.
        await shell.close()
        try await agent.stop()
    }

    @Test func aRestartedQEMUKeepsTheTotalsMonotonicAndRecordsAGap() async throws {
        let (bed, agent) = try setUp("restart")
        defer { bed.shutdown() }
        try await agent.waitReady()
        var spec = GuestSpec(name: "reborn")
        let first = try bed.launch(spec)
        try await first.waitReady()
        var shell = try await first.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=16 oflag=direct")
        await shell.close()
        let firstTotals = try await LedgerReading.settled(first, dataDir: agent.dataDirectory, vm: "reborn")
        first.stop()

        // The same VM (name, UUID, disk) in a new QEMU: its counters start at zero.
        spec.disks[0].existingImage = first.disks[0]
        let second = try bed.launch(spec)
        try await second.waitReady()
        shell = try await second.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=8 oflag=direct")
        await shell.close()
        let secondCounters = try await LedgerReading.qemu(second).counters
        #expect(secondCounters[.writeBytes] == 8 * Self.mib)
        // The ledger adds the new counters to the old totals.
        let deadline = ContinuousClock.now + .seconds(30)
        var total = try LedgerReading.exported(dataDir: agent.dataDirectory, vm: "reborn")
        while total != firstTotals + secondCounters && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(300))
            total = try LedgerReading.exported(dataDir: agent.dataDirectory, vm: "reborn")
        }
        #expect(total == firstTotals + secondCounters)
        #expect(total[.writeBytes] == firstTotals[.writeBytes] + 8 * Self.mib)
        let gaps = try Spawn.capture(LedgerReading.vmpulse, ["billing", "gaps", "--data-dir", agent.dataDirectory, "--vm", "reborn"])
        #expect(gaps.stdout.contains("a new QEMU process"))
        try await agent.stop()
    }

    @Test func sigtermWritesEverythingPendingBeforeTheAgentExits() async throws {
        let bed = try TestBed(prefix: "term")
        defer { bed.shutdown() }
        // A flush interval longer than the test: only the shutdown's own flush can write.
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data",
                                     directory: bed.directory, flushInterval: 600)
        try await agent.waitReady()
        let guest = try bed.launch(GuestSpec(name: "term"))
        try await guest.waitReady()
        let shell = try await guest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=8 oflag=direct")
        await shell.close()
        try await Task.sleep(for: .seconds(2))  // sampled, not yet written
        let code = try await agent.stop()
        #expect(code == 0, "the agent exited \(code): \(agent.logText.suffix(2000))")
        let ledger = try LedgerReading.exported(dataDir: agent.dataDirectory, vm: "term")
        #expect(ledger == (try await LedgerReading.qemu(guest).counters))
        #expect(ledger[.writeBytes] >= 8 * Self.mib)
    }
}
