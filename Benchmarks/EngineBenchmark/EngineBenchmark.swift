import ArgumentParser
import AsyncHTTPClient
import Engine
import Foundation
import Glibc
import Logging
import VMPulseCore
import VMPulseTestSupport

/// `make bench-engine`: what an engine's polling costs on the wire, in one run, for 100
/// and 500 VMs on one host: the proposal's scheme (runtime every 3 s, the details only on
/// a hash change, devices every 5 min) beside the old one (every VM's full statistics
/// every 15 s and the VM list every 3 s); then the engine's CPU and memory polling 50 hosts.
///
/// The VMs are QMP simulators (scripted fake peers replaying one real paused guest's
/// replies, `QMPSimulator`, ten per process) behind a real agent; the 50 hosts are
/// scripted fake agents (`ScriptedAgent`) replaying that real agent's answers.
@main
struct EngineBenchmark: AsyncParsableCommand {
    @Option(help: "Seconds the engine's poller runs against each agent.") var seconds = 60
    @Option(help: "Hosts the engine polls for the CPU and memory figure.") var hosts = 50
    @Option(help: "Seconds the engine runs against the hosts.") var engineSeconds = 60

    func run() async throws {
        let bed = try TestBed(prefix: "enginebench")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "model")
        spec.paused = true
        let model = try bed.launch(spec)
        let replies = try await QMPSimulator.recordReplies(model: model, bed: bed)
        var simulators: [pid_t] = []
        defer { for pid in simulators { kill(pid, SIGKILL); _ = waitpid(pid, nil, 0) } }
        var rows: [String] = []
        var answers: [String: JSONValue] = [:]
        for vms in [100, 500] {
            let dir = bed.directory + "/sim-\(vms)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for first in stride(from: 0, to: vms, by: 10) {
                simulators.append(try Spawn.start(Spawn.builtProduct("MetricsBenchmark"), [
                    "simulate", "--directory", dir, "--first", "\(first)", "--count", "\(min(10, vms - first))", "--replies", replies,
                ], outputPath: bed.directory + "/simulator.log"))
            }
            let (row, captured) = try await wire(vms: vms, socketDirectory: dir, bed: bed)
            rows.append(row)
            if vms == 100 { answers = captured }
        }
        print("""

            one host, agent defaults (I/O pass every 1 s, full pass every 15 s), QMP simulators for the VMs; \
            bytes are JSON-RPC bodies (request and answer), per hour from each call's measured size and the scheme's rate

            | VMs | scheme | calls per hour | bytes per hour | runtime refreshed every | bytes / old scheme |
            |---|---|---|---|---|---|
            \(rows.joined(separator: "\n"))
            """)
        print(try await enginePolling(answers: answers, bed: bed))
    }

    /// The engine's real poller against a real agent for `seconds`, and the old scheme's calls beside it.
    func wire(vms: Int, socketDirectory: String, bed: TestBed) async throws -> (String, [String: JSONValue]) {
        let agent = try AgentProcess(socketDirectory: socketDirectory, dataDirectory: bed.directory + "/data-\(vms)", directory: bed.directory,
                                     interval: 1, flushInterval: 10, fullInterval: 15)
        defer { if agent.pid > 0 { kill(agent.pid, SIGKILL); _ = waitpid(agent.pid, nil, 0) } }
        try await agent.waitReady()
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            let r = try agent.result("Host.getAllVmRuntimeStats")
            if r.objectValue?.count == vms, r.objectValue?.values.allSatisfy({ $0["cpuUser"] != nil }) == true { break }
            try await Task.sleep(for: .seconds(1))
        }
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        let rpc = AgentRPC(endpoint: AgentEndpoint(name: "bench", host: "127.0.0.1", port: agent.port), client: client, token: nil, timeout: 10)
        var config = EngineConfig()
        config.database = bed.directory + "/fleet-\(vms).sqlite"
        let keeper = StoreKeeper(location: .sqlite(path: config.database), logger: Logger(label: "bench"))
        let poller = HostPoller(rpc: rpc, config: config, keeper: keeper, logger: Logger(label: "bench"))
        // The first poll asks every VM's details and the devices (all hashes new): not steady state.
        await poller.poll()
        let warm = await poller.traffic
        let polling = Task { await poller.run() }
        try await Task.sleep(for: .seconds(seconds))
        polling.cancel()
        _ = await polling.value
        let steady = await poller.traffic
        await keeper.close()
        func mean(_ method: String) -> Double {
            let calls = (steady.calls[method] ?? 0) - (warm.calls[method] ?? 0)
            let bytes = (steady.bytes[method] ?? 0) - (warm.bytes[method] ?? 0)
            return calls > 0 ? Double(bytes) / Double(calls) : Double(warm.bytes[method] ?? 0) / Double(max(1, warm.calls[method] ?? 1))
        }
        let perHour = 3600.0 / Double(seconds)
        let detailMethods = ["VM.getConfInfo", "VM.getStatus", "VM.getGuestDetails"]
        let detailCalls = detailMethods.map { Double((steady.calls[$0] ?? 0) - (warm.calls[$0] ?? 0)) * perHour }.reduce(0, +)
        let detailBytes = detailMethods.map { Double((steady.bytes[$0] ?? 0) - (warm.bytes[$0] ?? 0)) * perHour }.reduce(0, +)
        let billingBytes = mean("Host.getBillingRecords")
        let newCalls = 1200 + 12 + 60 + detailCalls
        let newBytes = 1200 * mean("Host.getAllVmRuntimeStats") + 12 * mean("Host.getAllVmDeviceStats") + 60 * billingBytes + detailBytes
        // The old scheme: the VM list (state only) every 3 s, every VM's full statistics every 15 s.
        var list = 0, full = 0
        for _ in 0..<5 {
            list += try await rpc.call("Host.getAllDomainStats", ["groups": ["state"]]).bytes
            full += try await rpc.call("Host.getAllDomainStats").bytes
        }
        let oldCalls = 1200.0 + 240
        let oldBytes = 1200 * Double(list) / 5 + 240 * Double(full) / 5
        // What the 50-host run replays: this agent's answers.
        var captured: [String: JSONValue] = [:]
        let runtime = try await rpc.call("Host.getAllVmRuntimeStats").result
        captured["Host.getAllVmRuntimeStats"] = runtime
        let ids: JSONValue = .array((runtime.objectValue ?? [:]).keys.map { .string($0) })
        for m in detailMethods { captured[m] = try await rpc.call(m, ["vmIDs": ids]).result }
        captured["Host.getAllVmDeviceStats"] = try await rpc.call("Host.getAllVmDeviceStats").result
        captured["Host.getBillingRecords"] = try await rpc.call("Host.getBillingRecords").result
        try await agent.stop()
        try await client.shutdown()
        func mib(_ b: Double) -> String { String(format: "%.1f MiB", b / 1_048_576) }
        let row = """
            | \(vms) | proposal (runtime 3 s, details on hash change: \(Int(detailCalls)) calls/h measured, devices 5 min, billing 1 min) | \(Int(newCalls)) | \(mib(newBytes)) | 3 s | \(String(format: "%.3f", newBytes / oldBytes)) |
            | \(vms) | old (VM list 3 s, full statistics 15 s) | \(Int(oldCalls)) | \(mib(oldBytes)) | 15 s | 1 |
            """
        return (row, captured)
    }

    /// `vmpulse engine run` polling `hosts` fake agents with the defaults (runtime every 3 s):
    /// its CPU share and memory.
    func enginePolling(answers: [String: JSONValue], bed: TestBed) async throws -> String {
        let fakes = try (0..<hosts).map { _ in
            try ScriptedAgent { method in answers[method].map { .result($0) } ?? .error(code: -32601, message: "no method \(method)") }
        }
        defer { for f in fakes { f.stop() } }
        let list = fakes.enumerated().map { "host-\($0.offset)=\($0.element.address)" }.joined(separator: ",")
        let pid = try Spawn.start(Spawn.builtProduct("vmpulse"), ["engine", "run", "--agents", list, "--database", bed.directory + "/fleet-50.sqlite"],
                                  outputPath: bed.directory + "/engine.log")
        defer { kill(pid, SIGKILL); _ = waitpid(pid, nil, 0) }
        try await Task.sleep(for: .seconds(10))  // every host's first poll (all details) is done
        let cpu0 = try ProcessUsage.cpuSeconds(pid), t0 = ContinuousClock.now
        try await Task.sleep(for: .seconds(engineSeconds))
        let cpu1 = try ProcessUsage.cpuSeconds(pid), elapsed = ContinuousClock.now - t0
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }.map { String($0.dropFirst(6)).trimmingCharacters(in: .whitespaces) } ?? "?"
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let calls = fakes.map { $0.called.count }.reduce(0, +)
        return """

            vmpulse engine run, defaults (runtime every 3 s), polling \(hosts) scripted fake agents on distinct ports, each replaying \
            the 100-VM agent's answers (\(100 * hosts) VMs in all), fleet store in SQLite, measured over \(engineSeconds) s after 10 s

            | hosts | VMs | engine CPU (share of one core) | engine RSS | calls answered |
            |---|---|---|---|---|
            | \(hosts) | \(100 * hosts) | \(String(format: "%.2f %%", 100 * (cpu1 - cpu0) / seconds)) | \(rss) | \(calls) |
            """
    }
}
