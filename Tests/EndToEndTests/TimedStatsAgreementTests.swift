import Foundation
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The agent computes its windows from counter deltas, for any backend; QEMU computes
/// `timed_stats` itself for `-drive stats-intervals=`. On the same workload they agree.
@Suite(.serialized) struct TimedStatsAgreementTests {
    @Test func latencyWindowsAgreeWithQEMUsTimedStats() async throws {
        let bed = try TestBed(prefix: "timed")
        defer { bed.shutdown() }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        try await agent.waitReady()
        var spec = GuestSpec(name: "timed")
        spec.statsIntervals = [60]
        let guest = try bed.launch(spec)
        try await guest.waitReady()
        let shell = try await guest.shell()
        // A steady write workload of a few seconds, then quiet, so both windows hold the same writes.
        try await shell.check("i=0; while [ $i -lt 200 ]; do dd if=/dev/zero of=/dev/vda bs=64k count=1 seek=$i oflag=direct 2>/dev/null; i=$((i+1)); done")
        await shell.close()
        _ = try await LedgerReading.settled(guest, dataDir: agent.dataDirectory, vm: "timed")
        try await Task.sleep(for: .seconds(1))

        let raw = try await LedgerReading.qemu(guest).raw
        let timed = try #require(raw["timed_stats"]?.arrayValue?.first { $0["interval_length"]?.int64Value == 60 })
        let qemuLatency = try #require(timed["avg_wr_latency_ns"]?.doubleValue)
        let qemuDepth = try #require(timed["avg_wr_queue_depth"]?.doubleValue)

        let out = try Spawn.capture(LedgerReading.vmpulse, ["stats", "--agent", agent.address, "--json", "--group", "io", "timed"])
        let record = try #require(try StatsFormat.parseJSON(Array(out.stdout.utf8)).first)
        guard case .double(let ours)? = record["io.0.write_latency_avg_ns.1m"], case .double(let ourDepth)? = record["io.0.write_queue_depth_avg.1m"],
              case .double(let ourWindow)? = record["io.0.window_seconds.1m"]
        else {
            Issue.record("no 1m write windows: \(out.stdout)")
            return
        }
        print("write latency: vmpulse \(ours) ns, QEMU \(qemuLatency) ns; queue depth: vmpulse \(ourDepth), QEMU \(qemuDepth)")
        // Both are the mean of the same writes' latencies: within 1 %.
        #expect(abs(ours - qemuLatency) / qemuLatency < 0.01)
        // Queue depth is the same sum of latencies divided by each one's window: vmpulse's
        // is window_seconds (what it has watched); QEMU keeps two windows staggered by half
        // an interval, so its own covers from half an interval to two (30 to 120 s here).
        // vmpulse's depth times its window, over QEMU's depth, is QEMU's window length.
        let qemuWindow = ourDepth * ourWindow / qemuDepth
        print("window: vmpulse \(ourWindow) s, QEMU (derived) \(qemuWindow) s")
        #expect(qemuWindow >= 29 && qemuWindow <= 121, "QEMU's window would be \(qemuWindow) s")
        try await agent.stop()
    }
}
