import Foundation
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Reads what the ledger and QEMU say, for the accounting tests.
enum LedgerReading {
    static let vmpulse = Spawn.builtProduct("vmpulse")

    /// The sum of every exported period of `vm`'s `disk`, through `vmpulse billing export --format json`.
    static func exported(dataDir: String, vm: String, disk: String = "drive0") throws -> BlockCounters {
        let out = try Spawn.capture(vmpulse, ["billing", "export", "--data-dir", dataDir, "--format", "json", "--vm", vm])
        guard out.status == 0 else { throw TestBedError("billing export failed (\(out.status)): \(out.stderr)") }
        guard let rows = try JSONParser.parse(Array(out.stdout.utf8)).arrayValue else { throw TestBedError("export is not an array") }
        var total = BlockCounters()
        for row in rows where row["disk"]?.stringValue == disk {
            for c in IOCounter.allCases {
                guard let v = row[c.name]?.uint64Value else { throw TestBedError("export row lacks \(c.name)") }
                total[c] += v
            }
        }
        return total
    }

    /// The drive's cumulative counters as QEMU reports them, through the test's own monitor.
    static func qemu(_ guest: Guest, drive: String = "drive0") async throws -> (counters: BlockCounters, raw: JSONValue) {
        let client = try await QMPClient.connect(socketPath: guest.controlSocket)
        let result = try await qemu(client, drive: drive)
        await client.close()
        return result
    }

    /// QEMU's run state (`running`, `io-error`, ...), through the test's own monitor.
    static func qemuStatus(_ guest: Guest) async throws -> String {
        let client = try await QMPClient.connect(socketPath: guest.controlSocket)
        let status = try await client.execute("query-status")["status"]?.stringValue ?? ""
        await client.close()
        return status
    }

    /// The same on an open connection (a monitor serves one client at a time).
    static func qemu(_ client: QMPClient, drive: String = "drive0") async throws -> (counters: BlockCounters, raw: JSONValue) {
        let reply = try await client.execute("query-blockstats")
        guard let entry = reply.arrayValue?.first(where: { $0["device"]?.stringValue == drive }), let stats = entry["stats"] else {
            throw TestBedError("no \(drive) in query-blockstats")
        }
        var c = BlockCounters()
        for counter in IOCounter.allCases { c[counter] = stats[counter.qemuName]?.uint64Value ?? 0 }
        return (c, stats)
    }

    /// The name vmpulse gives the guest's disk `index`: QEMU's drive id on the QMP backend,
    /// libvirt's target (`vda`, `vdb`, ...) on the libvirt backend.
    static func diskName(_ guest: Guest, _ index: Int = 0) -> String {
        guard guest.libvirtURI != nil else { return "drive\(index)" }
        return "vd" + String(UnicodeScalar(UInt8(ascii: "a") + UInt8(index)))
    }

    /// The disk's cumulative counters as the hypervisor reports them, read with the test's own
    /// tools: QEMU's `query-blockstats` on the control monitor, or `virsh domstats --block` for
    /// a libvirt guest (libvirt reports bytes, requests and times of reads, writes and flushes;
    /// the other counters are 0 there, as they are in the ledger on that backend).
    static func hypervisor(_ guest: Guest, disk index: Int = 0) async throws -> BlockCounters {
        guard let uri = guest.libvirtURI else { return try await qemu(guest, drive: "drive\(index)").counters }
        let out = try Spawn.capture("/usr/bin/timeout", ["30", "/usr/bin/virsh", "-q", "-c", uri, "domstats", "--block", guest.name])
        guard out.status == 0 else { throw TestBedError("virsh domstats failed (\(out.status)): \(out.stderr)") }
        var values: [String: UInt64] = [:]
        for line in out.stdout.split(separator: "\n") {
            let parts = line.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if parts.count == 2, let v = UInt64(parts[1]) { values[String(parts[0])] = v }
        }
        let pairs: [(IOCounter, String)] = [
            (.readBytes, "rd.bytes"), (.writeBytes, "wr.bytes"), (.readIOs, "rd.reqs"), (.writeIOs, "wr.reqs"), (.flushIOs, "fl.reqs"),
            (.totalReadTimeNs, "rd.times"), (.totalWriteTimeNs, "wr.times"), (.totalFlushTimeNs, "fl.times"),
        ]
        var c = BlockCounters()
        for (counter, key) in pairs {
            guard let v = values["block.\(index).\(key)"] else { throw TestBedError("virsh domstats has no block.\(index).\(key): \(out.stdout)") }
            c[counter] = v
        }
        return c
    }

    /// Waits until the ledger holds exactly what the hypervisor counts for the disk (the agent
    /// has sampled and flushed), and returns it. Fails with both figures if it never does.
    static func settled(_ guest: Guest, dataDir: String, vm: String, disk index: Int = 0, timeout: Duration = .seconds(30)) async throws -> BlockCounters {
        let deadline = ContinuousClock.now + timeout
        var last: (ledger: BlockCounters, hypervisor: BlockCounters)?
        while ContinuousClock.now < deadline {
            let q = try await hypervisor(guest, disk: index)
            let l = try exported(dataDir: dataDir, vm: vm, disk: diskName(guest, index))
            if l == q { return l }
            last = (l, q)
            try await Task.sleep(for: .milliseconds(300))
        }
        let diff = IOCounter.allCases.filter { last?.ledger[$0] != last?.hypervisor[$0] }
            .map { "\($0.name): ledger \(last?.ledger[$0] ?? 0) hypervisor \(last?.hypervisor[$0] ?? 0)" }
        throw TestBedError("the ledger never matched the hypervisor's counters: \(diff.joined(separator: "; "))")
    }
}

extension GuestBed {
    /// The agent configuration's lines that point it at this bed's guests.
    var agentBackendYAML: String {
        if let bed = self as? TestBed { return "socket_dir: \(bed.socketDirectory)" }
        return "backend: libvirt\nlibvirt_uri: '\(libvirtURI ?? "")'"
    }

    /// `vmpulse stats` options that collect this bed's guests directly.
    var statsArguments: [String] {
        if let bed = self as? TestBed { return ["--direct", "--socket-dir", bed.socketDirectory] }
        return ["--direct", "--backend", "libvirt", "--libvirt-uri", libvirtURI ?? ""]
    }

    /// A real agent reading this bed's guests.
    func agent(interval: Double = 0.5, flushInterval: Double = 1, fullInterval: Double = 5, extraYAML: String = "") throws -> AgentProcess {
        try AgentProcess(backendYAML: agentBackendYAML, dataDirectory: directory + "/data", directory: directory,
                         interval: interval, flushInterval: flushInterval, fullInterval: fullInterval, extraYAML: extraYAML)
    }
}
