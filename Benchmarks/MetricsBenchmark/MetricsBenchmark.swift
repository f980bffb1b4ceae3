import ArgumentParser
import Foundation
import Glibc
import VMPulseCore
import VMPulseTestSupport

/// `make bench-metrics`: what a Prometheus scrape of `GET /metrics` costs, in one run, for
/// `--paused` real paused guests and then for `--simulated` VMs served by the QMP simulator
/// (a scripted fake peer replaying one real paused guest's replies; see `QMPSimulator`),
/// beside the sampling period, and whether scraping shifts the sampler's ticks.
@main
struct MetricsBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(subcommands: [Measure.self, Simulate.self], defaultSubcommand: Measure.self)

    struct Measure: AsyncParsableCommand {
        @Option(help: "Real paused guests.") var paused = 100
        @Option(help: "Simulated VMs.") var simulated = 500
        @Option(help: "Scrapes timed per case.") var scrapes = 200
        @Option(help: "Seconds of ticks counted, quiet and under back-to-back scrapes.") var seconds = 10

        func validate() throws {
            guard (1...300).contains(paused), (1...2000).contains(simulated) else { throw ValidationError("1 to 300 paused guests, 1 to 2000 simulated VMs") }
            guard scrapes >= 10, seconds >= 5 else { throw ValidationError("at least 10 scrapes and 5 seconds") }
        }

        func run() async throws {
            let bed = try TestBed(prefix: "metricsbench")
            defer { bed.shutdown() }
            print("starting \(paused) paused guests ...")
            var guests: [Guest] = []
            for i in 0..<paused {
                var spec = GuestSpec(name: "idle-\(i)")
                spec.paused = true
                guests.append(try bed.launch(spec))
            }
            var rows = [try await measure(socketDirectory: bed.socketDirectory, vms: paused, label: "\(paused) paused guests", bed: bed)]

            // The paused guests take CPU of their own (TCG): only the model stays for the simulated case.
            for guest in guests.dropFirst() { guest.stop() }
            let simulated = bed.directory + "/simulated"
            try FileManager.default.createDirectory(atPath: simulated, withIntermediateDirectories: true)
            let replies = try await QMPSimulator.recordReplies(model: guests[0], bed: bed)
            // Ten VMs per process: a real QEMU has a few dozen open files, and the agent reads
            // /proc/PID/fd of each VM; 500 sockets in one process would make that 1000 each.
            var simulators: [pid_t] = []
            defer { for pid in simulators { kill(pid, SIGKILL); _ = waitpid(pid, nil, 0) } }
            for first in stride(from: 0, to: self.simulated, by: 10) {
                simulators.append(try Spawn.start(CommandLine.arguments[0], [
                    "simulate", "--directory", simulated, "--first", "\(first)", "--count", "\(min(10, self.simulated - first))", "--replies", replies,
                ], outputPath: bed.directory + "/simulator.log"))
            }
            let up = ContinuousClock.now + .seconds(60)
            while (try? FileManager.default.contentsOfDirectory(atPath: simulated).count) ?? 0 < self.simulated, ContinuousClock.now < up {
                try await Task.sleep(for: .milliseconds(200))
            }
            rows.append(try await measure(socketDirectory: simulated, vms: self.simulated, label: "\(self.simulated) simulated VMs", bed: bed))
            print("""

                agent defaults (I/O pass every 1 s, full pass every 15 s); \(scrapes) scrapes per case, one at a time, a new connection each; \
                ticks counted over \(seconds) s quiet, then \(seconds) s of scrapes back to back

                | VMs | scrape median | p99 | answer | series | sampling period | median / period | ticks quiet | ticks under scrapes | skipped passes under scrapes |
                |---|---|---|---|---|---|---|---|---|---|
                \(rows.joined(separator: "\n"))
                """)
        }

        func measure(socketDirectory: String, vms: Int, label: String, bed: TestBed) async throws -> String {
            let data = bed.directory + "/data-\(vms)-\(UInt32.random(in: 0...UInt32.max))"
            let agent = try AgentProcess(socketDirectory: socketDirectory, dataDirectory: data, directory: bed.directory,
                                         interval: 1, flushInterval: 10, fullInterval: 15)
            defer { if agent.pid > 0 { kill(agent.pid, SIGKILL); _ = waitpid(agent.pid, nil, 0) } }
            try await agent.waitReady()
            // Warm: every VM seen and two full passes done (the simulator's replies all cached).
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline {
                if (try agent.health().body["vms"]?.int64Value ?? 0) == Int64(vms) { break }
                try await Task.sleep(for: .seconds(1))
            }
            try await Task.sleep(for: .seconds(32))
            var times: [Double] = [], bytes = 0, series = 0
            for _ in 0..<scrapes {
                let t0 = ContinuousClock.now
                let r = try HTTPGet.fetch(port: agent.port, path: "/metrics")
                times.append(Self.ms(ContinuousClock.now - t0))
                guard r.status == 200 else { throw TestBedError("/metrics answered \(r.status)") }
                bytes = r.body.utf8.count
                series = r.body.split(separator: "\n").filter { !$0.hasPrefix("#") }.count
            }
            let quiet = try await ticks(agent, scraping: false)
            let busy = try await ticks(agent, scraping: true)
            try await agent.stop()
            let median = Self.percentile(times, 0.5)
            return "| \(label) | \(String(format: "%.2f", median)) ms | \(String(format: "%.2f", Self.percentile(times, 0.99))) ms | "
                + "\(String(format: "%.1f", Double(bytes) / 1024)) KiB | \(series) | 1000 ms | \(String(format: "%.4f", median / 1000)) | "
                + "\(quiet.ticks) | \(busy.ticks) | \(busy.skipped) |"
        }

        /// Ticks and skipped passes over `seconds`, read from the agent's own series.
        func ticks(_ agent: AgentProcess, scraping: Bool) async throws -> (ticks: Int, skipped: Int) {
            func read() throws -> (Double, Double) {
                let body = try HTTPGet.fetch(port: agent.port, path: "/metrics").body
                func value(_ name: String) -> Double {
                    body.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) } ?? 0
                }
                return (value("vmpulse_agent_ticks_total"), value("vmpulse_agent_skipped_passes_total"))
            }
            let before = try read()
            let end = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < end {
                if scraping { _ = try HTTPGet.fetch(port: agent.port, path: "/metrics") } else { try await Task.sleep(for: .milliseconds(100)) }
            }
            let after = try read()
            return (Int(after.0 - before.0), Int(after.1 - before.1))
        }

        static func ms(_ d: Duration) -> Double {
            Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15
        }

        static func percentile(_ v: [Double], _ p: Double) -> Double {
            let s = v.sorted()
            return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
        }
    }

    /// A QMP simulator process (started by `measure`; a fake peer, documented as such).
    struct Simulate: AsyncParsableCommand {
        @Option var directory: String
        @Option var first = 0
        @Option var count: Int
        @Option(help: "A JSON file of replies recorded from a real paused guest.") var replies: String

        func run() async throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: replies))
            guard case .object(let table) = try JSONParser.parse(Array(data)) else { throw ValidationError("\(replies) is not a JSON object") }
            _ = try await QMPSimulator.start(directory: directory, first: first, count: count, replies: .recorded(table))
            FileHandle.standardOutput.write(Data("simulating \(count) monitors from sim-\(first) in \(directory)\n".utf8))
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
    }
}
