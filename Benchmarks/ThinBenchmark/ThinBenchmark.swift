import ArgumentParser
import Foundation
import QMP
import VMPulseCore
import VMPulseTestSupport

/// `make bench-thin`: the thin-disk loop driven by QEMU's write-threshold event, beside
/// the same loop driven by polling every 2 s, on a real guest writing to a qcow2 on a
/// loop device. Reports the time from the event's arrival to the next mark being set
/// (p50, p99, max), the guest's write rate, and how often the guest was paused.
@main
struct ThinBenchmark: AsyncParsableCommand {
    @Option(help: "Chunk size, MiB.") var chunk = 16
    @Option(help: "MiB the guest writes in each run.") var write = 1024
    @Option(help: "Polling interval of the comparison run, seconds.") var poll: Double = 2

    func run() async throws {
        var rows: [(String, Result)] = []
        rows.append(("events", try await measure(polling: 0)))
        rows.append(("polling every \(poll) s", try await measure(polling: poll)))
        print("""

            guest writes \(write) MiB with O_DIRECT to a qcow2 on a loop device of 64 MiB, chunk \(chunk) MiB, mark at 80 % of a chunk below the end

            | driven by | extensions | cycle p50 ms | cycle p99 ms | cycle max ms | guest write rate MiB/s | guest pauses |
            |---|---|---|---|---|---|---|
            """)
        for (label, r) in rows {
            let s = r.cycles.sorted()
            func q(_ f: Double) -> String { s.isEmpty ? "-" : String(format: "%.1f", s[min(s.count - 1, Int((Double(s.count) * f).rounded(.up)) - 1)]) }
            print("| \(label) | \(r.extensions) | \(q(0.5)) | \(q(0.99)) | \(s.last.map { String(format: "%.1f", $0) } ?? "-") | \(String(format: "%.0f", r.rate)) | \(r.pauses) |")
        }
        print("\ncycle: from the write-threshold event's arrival at the agent to the next mark set in QEMU (extension and verification included)")
    }

    struct Result {
        var extensions: Int
        var cycles: [Double]
        var rate: Double
        var pauses: Int
    }

    func measure(polling: Double) async throws -> Result {
        let bed = try TestBed(prefix: "thinbench")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: write * 2)
        defer { fixture.detach() }
        let yaml = """
            thin:
              polling_interval: \(polling)
            thin_disks:
              - vm: bench
                drive: disk0
                chunk_mib: \(chunk)
                utilization_percent: 20
                max_size_mib: \(write * 2 + write / 5)
                device: \(fixture.device)
                backend: loop
                file: \(fixture.file)
            """
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory, extraYAML: yaml)
        try await agent.waitReady()
        var spec = GuestSpec(name: "bench")
        spec.disks = []
        spec.extraArguments = fixture.qemuArguments
        let guest = try bed.launch(spec)
        try await guest.waitReady()
        try await Task.sleep(for: .seconds(2))
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        let pauses = Task {
            var stops = 0
            for await e in control.events where e.name == "STOP" { stops += 1 }
            return stops
        }
        let shell = try await guest.shell()
        let start = ContinuousClock.now
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=\(write) oflag=direct 2>/dev/null", timeout: .seconds(1200))
        let took = ContinuousClock.now - start
        await shell.close()
        try await Task.sleep(for: .seconds(polling + 1))
        await control.close()
        let body = try HTTPGet.fetch(port: agent.port, path: "/v1/thin").body
        let disk = try JSONParser.parse(Array(body.utf8)).arrayValue?.first ?? .null
        try await agent.stop()
        let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
        return Result(
            extensions: Int(disk["extensions"]?.int64Value ?? 0),
            cycles: disk["recent_cycles_ms"]?.arrayValue?.compactMap(\.doubleValue) ?? [],
            rate: Double(write) / seconds, pauses: await pauses.value)
    }
}
