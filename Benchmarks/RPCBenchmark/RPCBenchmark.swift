import ArgumentParser
import Foundation
import Glibc
import VMPulseTestSupport

/// `make bench-rpc`: what an engine's poll costs. Boots `--paused` paused guests, runs
/// `vmpulse agent` with its defaults, and times, in one run, `Host.getAllVmRuntimeStats`
/// over `POST /rpc` (what the engine asks every few seconds) beside `GET /v1/stats` (the
/// whole records) and the `vmpulse stats --json` process, with the size of each answer.
@main
struct RPCBenchmark: AsyncParsableCommand {
    @Option(help: "Paused guests.") var paused = 100
    @Option(help: "Calls timed per request kind.") var calls = 200
    @Option(help: "vmpulse stats processes timed.") var processes = 20

    func validate() throws {
        guard (1...300).contains(paused) else { throw ValidationError("1 to 300 paused guests") }
        guard calls >= 10, processes >= 3 else { throw ValidationError("at least 10 calls and 3 processes") }
    }

    func run() async throws {
        let bed = try TestBed(prefix: "rpcbench")
        defer { bed.shutdown() }
        print("starting \(paused) paused guests ...")
        for i in 0..<paused {
            var spec = GuestSpec(name: "idle-\(i)")
            spec.paused = true
            try bed.launch(spec)
        }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     interval: 1, flushInterval: 10, fullInterval: 15)
        try await agent.waitReady()
        // Two full passes, so that every VM has its CPU figures and its description.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let r = try agent.result("Host.getAllVmRuntimeStats")
            if r.objectValue?.count == paused, r.objectValue?.values.allSatisfy({ $0["cpuUser"] != nil }) == true { break }
            try await Task.sleep(for: .seconds(1))
        }
        let runtime = Array(#"{"jsonrpc": "2.0", "id": 1, "method": "Host.getAllVmRuntimeStats"}"#.utf8)
        var rpc = (times: [Double](), bytes: 0)
        var stats = (times: [Double](), bytes: 0)
        for _ in 0..<calls {
            // Interleaved, so that both see the same agent at the same moments.
            let t0 = ContinuousClock.now
            let r = try agent.post(runtime)
            rpc.times.append(Self.ms(ContinuousClock.now - t0))
            rpc.bytes = r.body.utf8.count
            guard r.status == 200, r.body.contains("cpuUser") else { throw TestBedError("Host.getAllVmRuntimeStats: \(r.status) \(r.body.prefix(200))") }
            let t1 = ContinuousClock.now
            let s = try HTTPGet.fetch(port: agent.port, path: "/v1/stats")
            stats.times.append(Self.ms(ContinuousClock.now - t1))
            stats.bytes = s.body.utf8.count
        }
        var cli = (times: [Double](), bytes: 0)
        let vmpulse = Spawn.builtProduct("vmpulse")
        for _ in 0..<processes {
            let t0 = ContinuousClock.now
            let out = try Spawn.capture(vmpulse, ["stats", "--json", "--agent", agent.address])
            cli.times.append(Self.ms(ContinuousClock.now - t0))
            cli.bytes = out.stdout.utf8.count
            guard out.status == 0 else { throw TestBedError("vmpulse stats: \(out.stderr)") }
        }
        try await agent.stop()
        let base = Self.median(rpc.times)
        func row(_ name: String, _ m: (times: [Double], bytes: Int)) -> String {
            "| \(name) | \(String(format: "%.2f", Self.median(m.times))) ms | \(String(format: "%.2f", Self.percentile(m.times, 0.99))) ms | "
                + "\(String(format: "%.1f", Double(m.bytes) / 1024)) KiB | \(String(format: "%.2f", Self.median(m.times) / base)) |"
        }
        print("""

            \(paused) paused VMs, agent defaults (I/O pass every 1 s, full pass every 15 s); \(calls) calls of each request \
            (interleaved, a new connection each), \(processes) vmpulse stats processes

            | request | median | p99 | answer | time / Host.getAllVmRuntimeStats |
            |---|---|---|---|---|
            \(row("POST /rpc Host.getAllVmRuntimeStats", rpc))
            \(row("GET /v1/stats (every group, JSON)", stats))
            \(row("vmpulse stats --json (the process, through the agent)", cli))
            """)
    }

    static func ms(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15
    }

    static func median(_ v: [Double]) -> Double { percentile(v, 0.5) }

    static func percentile(_ v: [Double], _ p: Double) -> Double {
        let s = v.sorted()
        return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
    }
}
