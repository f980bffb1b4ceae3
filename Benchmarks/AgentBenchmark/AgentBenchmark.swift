import ArgumentParser
import Foundation
import Glibc
import VMPulseTestSupport

/// `make bench-agent`: the agent's cost at scale. Boots `--paused` paused guests and
/// `--busy` guests writing and reading their disks, runs `vmpulse agent` with its
/// defaults (I/O pass every second, full pass every 15 s, ledger every 10 s) and
/// reads the agent's CPU time and memory from /proc over `--seconds`.
@main
struct AgentBenchmark: AsyncParsableCommand {
    @Option(help: "Paused guests.") var paused = 100
    @Option(help: "Booted guests with a disk workload.") var busy = 3
    @Option(help: "Seconds measured (after a warm-up).") var seconds = 60
    @Option(help: "Seconds of warm-up before measuring.") var warmup = 20

    func validate() throws {
        guard (0...300).contains(paused), (0...20).contains(busy), paused + busy > 0 else { throw ValidationError("0 to 300 paused and 0 to 20 busy guests") }
        guard seconds >= 10 else { throw ValidationError("--seconds must be at least 10") }
    }

    func run() async throws {
        let bed = try TestBed(prefix: "agentbench")
        defer { bed.shutdown() }
        print("starting \(paused) paused and \(busy) busy guests ...")
        for i in 0..<paused {
            var spec = GuestSpec(name: "idle-\(i)")
            spec.paused = true
            try bed.launch(spec)
        }
        var booted: [Guest] = []
        for i in 0..<busy {
            var spec = GuestSpec(name: "busy-\(i)")
            spec.workload = "loop-write:64"
            booted.append(try bed.launch(spec))
        }
        for guest in booted { try await guest.waitReady(timeout: .seconds(120)) }

        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     interval: 1, flushInterval: 10, fullInterval: 15)
        try await agent.waitReady()
        let total = paused + busy
        print("agent pid \(agent.pid) running; warm-up \(warmup) s")
        try await Task.sleep(for: .seconds(warmup))
        let vms = try agent.health().body["vms"]?.int64Value ?? 0
        guard vms == total else { throw TestBedError("the agent sees \(vms) VMs, expected \(total)") }

        let cpu0 = try cpuSeconds(agent.pid)
        let t0 = ContinuousClock.now
        var rssSamples: [Int] = []
        while ContinuousClock.now - t0 < .seconds(seconds) {
            try await Task.sleep(for: .seconds(1))
            rssSamples.append(try statusKiB(agent.pid, "VmRSS"))
        }
        let elapsed = ContinuousClock.now - t0
        let cpu = try cpuSeconds(agent.pid) - cpu0
        let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let hwm = try statusKiB(agent.pid, "VmHWM")
        let share = cpu / wall
        let perVM = cpu / wall / Double(total) * 1e3
        let health = try agent.health()
        try await agent.stop()

        print("""

            \(total) VMs (\(paused) paused, \(busy) busy), I/O pass every 1 s, full pass every 15 s, ledger every 10 s; \(Int(wall)) s measured after \(warmup) s of warm-up

            | figure | value |
            |---|---|
            | agent CPU, share of one core | \(String(format: "%.2f", share * 100)) % |
            | agent CPU per sampled VM per second | \(String(format: "%.3f", perVM)) ms |
            | agent RSS (median over the run) | \(String(format: "%.1f", Double(rssSamples.sorted()[rssSamples.count / 2]) / 1024)) MiB |
            | agent peak RSS (VmHWM) | \(String(format: "%.1f", Double(hwm) / 1024)) MiB |
            | ledger state at the end | \(health.body["ledger"]?["state"]?.stringValue ?? "?") |
            """)
    }

    func cpuSeconds(_ pid: pid_t) throws -> Double { try ProcessUsage.cpuSeconds(pid) }

    func statusKiB(_ pid: pid_t, _ field: String) throws -> Int {
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            if let v = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") { return v }
        }
        throw TestBedError("no \(field) in /proc/\(pid)/status")
    }
}
