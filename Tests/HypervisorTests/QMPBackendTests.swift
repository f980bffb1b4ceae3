import Foundation
import Glibc
import Hypervisor
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Discovery and isolation in the QMP backend, with real paused QEMU guests
/// beside scripted fake peers that misbehave (bad input a real QEMU never sends).
@Suite(.serialized) struct QMPBackendTests {
    func backend(_ bed: TestBed, timeout: Duration = .seconds(2)) -> QMPBackend {
        var options = QMPBackend.Options()
        options.socketDirectory = bed.socketDirectory
        options.timeout = timeout
        return QMPBackend(options: options)
    }

    func pausedGuest(_ name: String) -> GuestSpec {
        var spec = GuestSpec(name: name)
        spec.paused = true
        return spec
    }

    @Test func discoversSocketsThatAppearAndDropsThoseThatGo() async throws {
        let bed = try TestBed(prefix: "disc")
        defer { bed.shutdown() }
        let a = try bed.launch(pausedGuest("vm-a"))
        let backend = backend(bed)
        var change = try await backend.refresh()
        #expect(change.added == [a.socketPath])

        let b = try bed.launch(pausedGuest("vm-b"))
        change = try await backend.refresh()
        #expect(change.added == [b.socketPath])
        #expect(try await backend.collect(groups: [.state]).map(\.name) == ["vm-a", "vm-b"])

        // QEMU exits and removes its socket: the VM is dropped.
        a.stop()
        change = try await backend.refresh()
        #expect(change.removed == [a.socketPath])
        #expect(try await backend.collect(groups: [.state]).map(\.name) == ["vm-b"])
        await backend.close()
    }

    @Test func aStaleSocketWithNoQEMUIsDropped() async throws {
        let bed = try TestBed(prefix: "stale")
        defer { bed.shutdown() }
        try bed.launch(pausedGuest("live"))
        // A socket file nobody listens on, as a QEMU killed with SIGKILL leaves behind.
        let stale = bed.socketDirectory + "/ghost.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in stale.utf8.enumerated() { raw[i] = byte }
        }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        #expect(FileManager.default.fileExists(atPath: stale))

        let backend = backend(bed)
        let records = try await backend.collect(groups: [.state])
        #expect(records.map(\.name) == ["live"])
        #expect(await !backend.machines.contains(stale))
        await backend.close()
    }

    @Test func aMissingSocketDirectoryIsAClearError() async {
        var options = QMPBackend.Options()
        options.socketDirectory = "/nonexistent/vmpulse"
        let backend = QMPBackend(options: options)
        do {
            _ = try await backend.collect(groups: [.state])
            Issue.record("collected from a missing directory")
        } catch {
            #expect(error.message.contains("cannot read the socket directory /nonexistent/vmpulse"))
            #expect(error.message.contains("--socket-dir"))
        }
    }

    @Test func misbehavingPeersDoNotDisturbARealVM() async throws {
        let bed = try TestBed(prefix: "bad")
        defer { bed.shutdown() }
        let real = try bed.launch(pausedGuest("real"))
        // One peer sends garbage, one a reply whose blockstats break the schema, one a 10 MB line.
        let garbage = try await ScriptedQMPPeer.answering(path: bed.socketDirectory + "/garbage.sock") { _, _ in [.send("%%% not json")] }
        let schema = try await ScriptedQMPPeer.answering(path: bed.socketDirectory + "/schema.sock") { command, _ in
            switch command {
            case "query-name": return [.reply(["name": "schema"])]
            case "query-uuid": return [.reply(["UUID": "00000000-0000-0000-0000-000000000001"])]
            case "query-status": return [.reply(["status": "running", "running": true])]
            case "query-blockstats": return [.reply([["device": "d", "node-name": "n", "stats": ["rd_bytes": "lots"]]])]
            case "query-named-block-nodes": return [.reply([])]
            default: return [.error(errorClass: "CommandNotFound", description: "no")]
            }
        }
        let flood = try await ScriptedQMPPeer.answering(path: bed.socketDirectory + "/flood.sock") { _, _ in [.flood(count: 10_000_000)] }
        defer {
            Task {
                await garbage.stop()
                await schema.stop()
                await flood.stop()
            }
        }
        let backend = backend(bed)
        let records = try await backend.collect(groups: [.state, .block])
        let byName = Dictionary(uniqueKeysWithValues: records.map { ($0.name, $0) })
        #expect(Set(byName.keys) == ["real", "garbage", "schema", "flood"])

        let good = try #require(byName["real"])
        #expect(good.errors.isEmpty)
        #expect(good.uuid == real.uuid)
        #expect(good["state.monitor-response"] == .int(0))
        #expect(good["block.0.capacity"] == .uint(256 << 20))

        let g = try #require(byName["garbage"])
        #expect(g["state.monitor-response"] == .int(-1))
        #expect(g.errors.first?.contains("malformed QMP message") == true)

        let s = try #require(byName["schema"])
        #expect(s["state.state"] == .int(1))
        #expect(!s.hasKeys(withPrefix: "block"))
        #expect(s.errors.contains { $0.hasPrefix("block:") && $0.contains("return[0].stats") })

        let f = try #require(byName["flood"])
        #expect(f["state.monitor-response"] == .int(-1))
        #expect(f.errors.first?.contains("longer than") == true)
        await backend.close()
    }

    @Test func aStoppedQEMUIsReportedWithinTheTimeoutWhileOthersAreComplete() async throws {
        let bed = try TestBed(prefix: "stop")
        defer { bed.shutdown() }
        let stuck = try bed.launch(pausedGuest("stuck"))
        for i in 0..<3 { try bed.launch(pausedGuest("ok\(i)")) }
        let backend = backend(bed, timeout: .seconds(1))
        // Connected before it stops, like a long-running agent.
        _ = try await backend.collect(groups: [.state])
        stuck.signal(SIGSTOP)
        defer { stuck.signal(SIGCONT) }
        let start = ContinuousClock.now
        let records = try await backend.collect(groups: [.state, .cpuTotal, .block])
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(2), "took \(elapsed)")
        #expect(records.count == 4)
        for record in records {
            if record.name == "stuck" {
                #expect(record["state.monitor-response"] == .int(-1))
                // The process's CPU time comes from /proc, which needs no monitor.
                #expect(record["cpu.time"] != nil)
                #expect(record.uuid == stuck.uuid)
            } else {
                #expect(record["state.monitor-response"] == .int(0))
                #expect(record.hasKeys(withPrefix: "block"))
                #expect(record.hasKeys(withPrefix: "cpu"))
                #expect(record.errors.isEmpty)
            }
        }
        stuck.signal(SIGCONT)
        // Once it runs again it answers again, on the same connection.
        let again = try await backend.collect(groups: [.state], vms: ["stuck"])
        #expect(again.first?["state.monitor-response"] == .int(0))
        await backend.close()
    }

    @Test func vmsAreSelectedByNameOrUUID() async throws {
        let bed = try TestBed(prefix: "sel")
        defer { bed.shutdown() }
        let a = try bed.launch(pausedGuest("alpha"))
        try bed.launch(pausedGuest("beta"))
        let backend = backend(bed)
        #expect(try await backend.collect(groups: [.state], vms: ["beta"]).map(\.name) == ["beta"])
        #expect(try await backend.collect(groups: [.state], vms: [a.uuid]).map(\.name) == ["alpha"])
        #expect(try await backend.collect(groups: [.state], vms: ["gamma"]).isEmpty)
        await backend.close()
    }
}
