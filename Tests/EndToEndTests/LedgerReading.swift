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

    /// Waits until the ledger holds exactly what QEMU counts for the drive (the agent has
    /// sampled and flushed), and returns it. Fails with both figures if it never does.
    static func settled(_ guest: Guest, dataDir: String, vm: String, timeout: Duration = .seconds(30)) async throws -> BlockCounters {
        let deadline = ContinuousClock.now + timeout
        var last: (ledger: BlockCounters, qemu: BlockCounters)?
        while ContinuousClock.now < deadline {
            let q = try await qemu(guest).counters
            let l = try exported(dataDir: dataDir, vm: vm)
            if l == q { return l }
            last = (l, q)
            try await Task.sleep(for: .milliseconds(300))
        }
        let diff = IOCounter.allCases.filter { last?.ledger[$0] != last?.qemu[$0] }
            .map { "\($0.name): ledger \(last?.ledger[$0] ?? 0) qemu \(last?.qemu[$0] ?? 0)" }
        throw TestBedError("the ledger never matched QEMU's counters: \(diff.joined(separator: "; "))")
    }
}
