import ArgumentParser
import Foundation
import VMPulseTestSupport

/// `make bench`: the wall time of `vmpulse stats --json` (whole process, all groups)
/// beside `virsh domstats` on the same number of libvirt-managed guests of the
/// same shape (paused, TCG, 128 MiB, one vCPU, a qcow2 virtio disk, a balloon),
/// in one run, as a ratio. Also the time per VM and vmpulse's peak RSS.
@main
struct StatsBenchmark: AsyncParsableCommand {
    @Option(help: "Guests on each side.") var guests = 50
    @Option(help: "Measured runs of each command (after two warm-up runs).") var runs = 15
    @Option(help: "Seconds each agent's CPU is measured over.") var cpuSeconds: Double = 20

    func validate() throws {
        guard (1...200).contains(guests) else { throw ValidationError("--guests must be between 1 and 200") }
        guard (3...1000).contains(runs) else { throw ValidationError("--runs must be between 3 and 1000") }
    }

    func run() async throws {
        let vmpulse = Spawn.builtProduct("vmpulse")
        guard FileManager.default.isExecutableFile(atPath: vmpulse) else {
            throw TestBedError("\(vmpulse) is missing: build it first (make bench does)")
        }
        try check(Spawn.run("scripts/libvirt-up.sh", []), "scripts/libvirt-up.sh (run from the repository root)")

        let bed = try TestBed(prefix: "bench")
        let libvirt = LibvirtGuests(directory: bed.directory + "/libvirt", count: guests)
        defer {
            libvirt.destroy()
            bed.shutdown()
        }
        print("starting \(guests) paused vmpulse test guests and \(guests) paused libvirt domains ...")
        for i in 1...guests {
            var spec = GuestSpec(name: "bench-\(i)")
            spec.paused = true
            try bed.launch(spec)
        }
        try libvirt.create()

        let vmpulseAll = Command(label: "vmpulse stats --json", program: vmpulse, arguments: ["stats", "--json", "--socket-dir", bed.socketDirectory])
        let virshAll = Command(label: "virsh domstats", program: "/usr/bin/virsh", arguments: ["-c", "qemu:///system", "domstats"])
        let vmpulseBlock = Command(label: "vmpulse stats --json --group block", program: vmpulse,
                                   arguments: ["stats", "--json", "--group", "block", "--socket-dir", bed.socketDirectory])
        let virshBlock = Command(label: "virsh domstats --block", program: "/usr/bin/virsh", arguments: ["-c", "qemu:///system", "domstats", "--block"])
        let commands = [vmpulseAll, virshAll, vmpulseBlock, virshBlock]

        // Both sides answer for every guest before anything is timed.
        try checkCounts(vmpulseAll, virshAll)
        var samples: [String: [Spawn.Measurement]] = [:]
        for _ in 0..<2 { for c in commands { _ = try c.measure() } }
        for _ in 0..<runs {
            for c in commands { samples[c.label, default: []].append(try c.measure()) }  // interleaved, so drift hits both
        }
        var rss: [String: Int] = [:]
        for c in commands {
            for _ in 0..<3 { rss[c.label] = max(rss[c.label] ?? 0, try Spawn.peakRSS(c.program, c.arguments)) }
        }

        // The same question answered by a running agent, from its snapshot. (It runs only
        // now: while it holds the monitors, direct collection cannot get through.)
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data",
                                     directory: bed.directory, interval: 1, flushInterval: 10, fullInterval: 15)
        try await agent.waitReady()
        try await Task.sleep(for: .seconds(3))
        let viaAgent = Command(label: "vmpulse stats --json (agent running)", program: vmpulse, arguments: ["stats", "--json", "--agent", agent.address])
        let seen = try Spawn.capture(viaAgent.program, viaAgent.arguments).stdout.components(separatedBy: "\"source\": \"agent\"").count - 1
        guard seen == guests else { throw TestBedError("the agent served \(seen) records, expected \(guests)") }
        for _ in 0..<2 { _ = try viaAgent.measure() }
        for _ in 0..<runs {
            samples[viaAgent.label, default: []].append(try viaAgent.measure())
            samples[virshAll.label, default: []].append(try virshAll.measure())
        }
        rss[viaAgent.label] = try Spawn.peakRSS(viaAgent.program, viaAgent.arguments)
        let qmpCPU = try await AgentCPU.measure(agent, vms: guests, seconds: cpuSeconds)
        try await agent.stop()

        // The libvirt backend on the libvirt side's domains: direct, and through an agent.
        let libvirtAll = Command(label: "vmpulse stats --json --backend libvirt --direct", program: vmpulse,
                                 arguments: ["stats", "--json", "--backend", "libvirt", "--libvirt-uri", "qemu:///system", "--direct"])
        try checkCounts(libvirtAll, virshAll, ourPrefix: "vmpbench-")
        for _ in 0..<2 { _ = try libvirtAll.measure() }
        for _ in 0..<runs {
            samples[libvirtAll.label, default: []].append(try libvirtAll.measure())
            samples[virshAll.label, default: []].append(try virshAll.measure())
        }
        rss[libvirtAll.label] = try Spawn.peakRSS(libvirtAll.program, libvirtAll.arguments)
        let libvirtAgent = try AgentProcess(backendYAML: "backend: libvirt\nlibvirt_uri: qemu:///system", dataDirectory: bed.directory + "/data-libvirt",
                                            directory: bed.directory, interval: 1, flushInterval: 10, fullInterval: 15)
        try await libvirtAgent.waitReady()
        try await Task.sleep(for: .seconds(3))
        let viaLibvirtAgent = Command(label: "vmpulse stats --json (libvirt agent running)", program: vmpulse,
                                      arguments: ["stats", "--json", "--agent", libvirtAgent.address])
        let served = try Spawn.capture(viaLibvirtAgent.program, viaLibvirtAgent.arguments).stdout.components(separatedBy: "\"source\": \"agent\"").count - 1
        guard served == guests else { throw TestBedError("the libvirt agent served \(served) records, expected \(guests)") }
        for _ in 0..<2 { _ = try viaLibvirtAgent.measure() }
        for _ in 0..<runs {
            samples[viaLibvirtAgent.label, default: []].append(try viaLibvirtAgent.measure())
            samples[virshAll.label, default: []].append(try virshAll.measure())
        }
        rss[viaLibvirtAgent.label] = try Spawn.peakRSS(viaLibvirtAgent.program, viaLibvirtAgent.arguments)
        let libvirtCPU = try await AgentCPU.measure(libvirtAgent, vms: guests, seconds: cpuSeconds, libvirtd: AgentCPU.pid(of: "libvirtd"))
        try await libvirtAgent.stop()

        report(samples, rss: rss, pairs: [(vmpulseAll, virshAll), (vmpulseBlock, virshBlock), (viaAgent, virshAll),
                                          (libvirtAll, virshAll), (viaLibvirtAgent, virshAll)])
        print("")
        print("| agent, \(guests) paused VMs, interval 1 s, \(Int(cpuSeconds)) s | agent CPU per VM sampled per second | agent share of one core | libvirtd's CPU meanwhile |")
        print("|---|---|---|---|")
        print(qmpCPU.row("qmp backend"))
        print(libvirtCPU.row("libvirt backend"))
    }

    struct Command {
        var label: String
        var program: String
        var arguments: [String]

        func measure() throws -> Spawn.Measurement {
            let m = try Spawn.measure(program, arguments)
            guard m.status == 0 else { throw TestBedError("\(label) exited \(m.status)") }
            return m
        }
    }

    func check(_ status: Int32, _ what: String) throws {
        guard status == 0 else { throw TestBedError("\(what) failed with status \(status)") }
    }

    func checkCounts(_ vmpulse: Command, _ virsh: Command, ourPrefix: String = "bench-") throws {
        let ours = try Spawn.capture(vmpulse.program, vmpulse.arguments)
        let theirs = try Spawn.capture(virsh.program, virsh.arguments)
        let ourCount = ours.stdout.components(separatedBy: "\"name\": \"\(ourPrefix)").count - 1
        let theirCount = theirs.stdout.components(separatedBy: "Domain: 'vmpbench-").count - 1
        guard ourCount == guests, theirCount == guests else {
            throw TestBedError("expected \(guests) guests on each side, vmpulse saw \(ourCount), virsh \(theirCount): \(ours.stderr) \(theirs.stderr)")
        }
        let ourKeys = ours.stdout.components(separatedBy: "\n").count
        print("each vmpulse run returns \(ourCount) records (\(ourKeys) lines of JSON); each virsh run \(theirCount) domains")
    }

    func report(_ samples: [String: [Spawn.Measurement]], rss: [String: Int], pairs: [(Command, Command)]) {
        func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
        func median(_ xs: [Double]) -> Double {
            let s = xs.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        func f(_ x: Double) -> String { String(format: "%.1f", x) }
        print("\n\(guests) paused guests per side, \(runs) runs each (medians; whole process, wall time)\n")
        print("| command | median ms | min ms | max ms | ms per VM | peak RSS MiB (of 3 runs under /usr/bin/time) |")
        print("|---|---|---|---|---|---|")
        var printed: Set<String> = []
        for (a, b) in pairs {
            for c in [a, b] where printed.insert(c.label).inserted {
                let walls = (samples[c.label] ?? []).map { ms($0.wall) }
                let rss = rss[c.label] ?? 0
                print("| \(c.label) | \(f(median(walls))) | \(f(walls.min() ?? 0)) | \(f(walls.max() ?? 0)) | \(String(format: "%.2f", median(walls) / Double(guests))) | \(f(Double(rss) / 1_048_576)) |")
            }
        }
        print("")
        for (a, b) in pairs {
            let ratio = median((samples[a.label] ?? []).map { ms($0.wall) }) / median((samples[b.label] ?? []).map { ms($0.wall) })
            print("ratio \(a.label) / \(b.label): \(String(format: "%.3f", ratio))")
        }
    }
}
