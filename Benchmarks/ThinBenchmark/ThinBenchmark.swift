import ArgumentParser
import Foundation
import QMP
import VMPulseCore
import VMPulseTestSupport

/// `make bench-thin`: the thin-disk loop on a real guest writing as fast as it can to a
/// qcow2 image on a loop device, driven by QEMU's write-threshold event with several
/// chunk sizes, and beside it the same loop driven by polling every 2 s (oVirt's way
/// before the event), in one run. For each: the cycle from the event's arrival at the
/// agent to the next mark set in QEMU (extension and verification included), its p50,
/// p99 and max; the guest's write rate; and how often the guest was paused.
@main
struct ThinBenchmark: AsyncParsableCommand {
    @Option(help: "Chunk sizes (MiB) of the event-driven runs, comma-separated.") var chunks = "16,4,2,1"
    @Option(help: "Chunk size (MiB) of the polling run.") var pollChunk = 16
    @Option(help: "MiB the guest writes in each run.") var write = 1024
    @Option(help: "Polling interval of the comparison run, seconds.") var poll: Double = 2
    @Option(help: "Starting size of the loop device, MiB.") var start = 64

    func validate() throws {
        guard !chunkList.isEmpty, chunkList.allSatisfy({ $0 > 0 }), pollChunk > 0 else { throw ValidationError("chunks are positive MiB") }
        guard write >= 64, poll > 0, start >= 16 else { throw ValidationError("--write at least 64, --poll positive, --start at least 16") }
    }

    var chunkList: [Int] { chunks.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() async throws {
        var rows: [(String, Int, Run)] = []
        for chunk in chunkList {
            print("events, chunk \(chunk) MiB ...")
            rows.append(("events", chunk, try await measure(chunk: chunk, polling: 0)))
        }
        print("polling every \(poll) s, chunk \(pollChunk) MiB ...")
        rows.append(("polling every \(poll) s", pollChunk, try await measure(chunk: pollChunk, polling: poll)))
        print("""

            The guest writes \(write) MiB of zeros with dd (1 MiB blocks, O_DIRECT) to a qcow2 image (capacity \(write * 2) MiB)
            on a loop device that starts at \(start) MiB; mark at 80 % of a chunk below the end of the device; loop backend.
            cycle: from the BLOCK_WRITE_THRESHOLD event's arrival at the agent to the next mark set in QEMU
            (the device grown, its size read back, the allocation read again, block-set-write-threshold answered).

            | driven by | chunk MiB | extensions | cycles | cycle p50 ms | cycle p99 ms | cycle max ms | guest write MiB/s | guest pauses |
            |---|---|---|---|---|---|---|---|---|
            """)
        for (label, chunk, r) in rows {
            print("| \(label) | \(chunk) | \(r.extensions) | \(r.cycles.count) | \(r.quantile(0.5)) | \(r.quantile(0.99)) | \(r.quantile(1)) | \(String(format: "%.0f", r.rate)) | \(r.pauses) |")
        }
        let events = rows.filter { $0.0 == "events" }
        if let polling = rows.last?.2, let same = events.first(where: { $0.1 == pollChunk })?.2, let e = same.p(0.5), let p = polling.p(0.5) {
            print("\ncycle p50, events / polling every \(poll) s (chunk \(pollChunk) MiB): \(String(format: "%.4f", e / p))")
        }
        if let best = events.filter({ $0.2.pauses == 0 }).min(by: { $0.1 < $1.1 }) {
            print("smallest chunk with no pause: \(best.1) MiB, at the guest's full write rate of \(String(format: "%.0f", best.2.rate)) MiB/s")
        }
    }

    struct Run {
        var extensions: Int
        var cycles: [Double]
        var rate: Double
        var pauses: Int

        /// Nearest-rank quantile, ms.
        func p(_ q: Double) -> Double? {
            let s = cycles.sorted()
            guard !s.isEmpty else { return nil }
            return s[max(0, min(s.count - 1, Int((Double(s.count) * q).rounded(.up)) - 1))]
        }

        func quantile(_ q: Double) -> String { p(q).map { String(format: "%.1f", $0) } ?? "-" }
    }

    func measure(chunk: Int, polling: Double) async throws -> Run {
        let bed = try TestBed(prefix: "thinbench")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: start, capacityMiB: write * 2)
        defer { fixture.detach() }
        let yaml = """
            thin:
              polling_interval: \(polling)
            thin_disks:
              - vm: bench
                drive: disk0
                chunk_mib: \(chunk)
                utilization_percent: 20
                device: \(fixture.device)
                backend: loop
                file: \(fixture.file)
            """
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory, extraYAML: yaml)
        try await agent.waitReady()
        let guest = try bed.launch(fixture.guest(named: "bench"))
        try await guest.waitReady()
        // Wait for the first mark, so that the run measures only event-driven cycles.
        for _ in 0..<100 where try thinDisk(agent)["state"]?.stringValue != "set" { try await Task.sleep(for: .milliseconds(100)) }
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        let pauses = Task {
            var stops = 0
            for await e in control.events where e.name == "STOP" { stops += 1 }
            return stops
        }
        let shell = try await guest.shell()
        let begin = ContinuousClock.now
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=\(write) oflag=direct 2>/dev/null", timeout: .seconds(1200))
        let took = ContinuousClock.now - begin
        await shell.close()
        try await Task.sleep(for: .seconds(polling + 1))
        await control.close()
        let disk = try thinDisk(agent)
        guard try await agent.stop() == 0 else { throw TestBedError("the agent did not stop cleanly: \(agent.logText.suffix(2000))") }
        let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
        return Run(
            extensions: Int(disk["extensions"]?.int64Value ?? 0),
            cycles: disk["recent_cycles_ms"]?.arrayValue?.compactMap(\.doubleValue) ?? [],
            rate: Double(write) / seconds, pauses: await pauses.value)
    }

    func thinDisk(_ agent: AgentProcess) throws -> JSONValue {
        let body = try HTTPGet.fetch(port: agent.port, path: "/v1/thin").body
        return try JSONParser.parse(Array(body.utf8)).arrayValue?.first ?? .null
    }
}
