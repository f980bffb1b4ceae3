import Foundation
import Glibc
import Synchronization
import Testing
import VMPulseCore
import VMPulseTestSupport

/// A monitor that lies as no real QEMU does (the scripted fake peer): counters past 2^63
/// and up to 2^64 - 1, counters that go backwards, histogram boundaries that decrease.
/// The real agent must neither trap nor bill more than the counters show, and the ledger
/// must hold and export every value exactly.
@Suite(.serialized) struct LyingPeerTests {
    static let uuid = "6c1e0b6f-3c1a-4d5e-9a43-6f2d1c0e7a55"

    static func blockstats(writeBytes: UInt64) -> JSONValue {
        .array([.object([
            "device": .string("drive0"), "node-name": .string("fmt0"), "qdev": .string("/machine/peripheral/disk0/virtio-backend"),
            "stats": .object([
                "rd_bytes": .uint(0), "wr_bytes": .uint(writeBytes), "unmap_bytes": .uint(0),
                "rd_operations": .uint(0), "wr_operations": .uint(UInt64.max), "flush_operations": .uint(0), "unmap_operations": .uint(0),
                "rd_total_time_ns": .uint(0), "wr_total_time_ns": .uint(UInt64.max), "flush_total_time_ns": .uint(0), "unmap_total_time_ns": .uint(0),
                "wr_highest_offset": .uint(UInt64.max), "rd_merged": .uint(0), "wr_merged": .uint(0), "unmap_merged": .uint(0),
                "failed_rd_operations": .uint(0), "failed_wr_operations": .uint(0), "failed_flush_operations": .uint(0), "failed_unmap_operations": .uint(0),
                "invalid_rd_operations": .uint(0), "invalid_wr_operations": .uint(0), "invalid_flush_operations": .uint(0), "invalid_unmap_operations": .uint(0),
                "account_invalid": .bool(true), "account_failed": .bool(true), "timed_stats": .array([]),
                "wr_latency_histogram": .object(["boundaries": .array([.uint(500), .uint(100)]), "bins": .array([.uint(1), .uint(2), .uint(UInt64.max)])]),
            ]),
        ])])
    }

    @Test func countersPast2To63AndGoingBackwardsAreBilledExactlyAndNeverTwice() async throws {
        let bed = try TestBed(prefix: "liar")
        defer { bed.shutdown() }
        let big = UInt64(1) << 63
        // What the peer says, one reading per query-blockstats, then the last one for good.
        // Each value three times: the agent bills a VM from its second pass on (its key must
        // hold for two passes), and its first pass also asks query-blockstats for the full groups.
        let script: [UInt64] = [big + 5, big + 1_005, UInt64.max, 7].flatMap { [$0, $0, $0] }
        let calls = Atomic<Int>(0)
        let peer = try await ScriptedQMPPeer.answering(path: bed.socketDirectory + "/liar.sock") { command, _ in
            switch command {
            case "query-name": return [.reply(["name": "liar"])]
            case "query-uuid": return [.reply(["UUID": .string(Self.uuid)])]
            case "query-status": return [.reply(["status": "running", "running": true])]
            case "query-blockstats":
                let n = calls.wrappingAdd(1, ordering: .relaxed).oldValue
                return [.reply(Self.blockstats(writeBytes: script[min(n, script.count - 1)]))]
            case "query-named-block-nodes": return [.reply([])]
            default: return [.error(errorClass: "GenericError", description: "not here")]
            }
        }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        try await agent.waitReady()
        // Wait until the whole script was read, and a flush after it.
        for _ in 0..<100 where calls.load(ordering: .relaxed) < script.count + 4 { try await Task.sleep(for: .milliseconds(100)) }
        try await Task.sleep(for: .seconds(2))
        #expect(Spawn.exited(agent.pid) == nil, "the agent died: \(agent.logText.suffix(2000))")

        // The first reading only sets the cursor (the peer's process predates the ledger);
        // then +1000, then up to 2^64 - 1, then a restart of the counters at 7.
        let expected = 1_000 + (UInt64.max - (big + 1_005)) + 7
        #expect(expected > big)
        let total = try LedgerReading.exported(dataDir: agent.dataDirectory, vm: Self.uuid)
        #expect(total[.writeBytes] == expected)
        // The operations and time counters sat at 2^64 - 1 from the first reading: nothing
        // billed for them until the counters went back (a reset: everything since counts
        // from zero), then 2^64 - 1 once, exactly, and never wrapped.
        #expect(total[.writeIOs] == UInt64.max)
        #expect(total[.totalWriteTimeNs] == UInt64.max)
        // The counters going backwards is a gap, not a negative or wrapped charge.
        let gaps = try Spawn.capture(LedgerReading.vmpulse, ["billing", "gaps", "--data-dir", agent.dataDirectory, "--format", "json"])
        #expect(gaps.status == 0, "\(gaps.stderr)")
        #expect(gaps.stdout.contains("counters went backwards"))

        // Stats through the agent: the exact counter, and no percentile from decreasing boundaries.
        let stats = try Spawn.capture(LedgerReading.vmpulse, ["stats", "--agent", agent.address, "--json", "--group", "io", "liar"])
        #expect(stats.status == 0, "\(stats.stderr)")
        let record = try #require(try StatsFormat.parseJSON(Array(stats.stdout.utf8)).first)
        #expect(record["io.0.write_bytes"]?.text == "7")
        #expect(record["io.0.write_latency_p99_ns.1m"] == nil)
        #expect(try await agent.stop() == 0)
        await peer.stop()
    }
}
