import AsyncHTTPClient
import Foundation
@testable import Engine
import Logging
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The engine's poller against scripted fake agents (`ScriptedAgent`) that do what no
/// real agent does, with a real SQLite fleet store.
@Suite struct EngineBadAgentTests {
    static let uuid = "0e3d2666-51c0-4d1e-b514-7c3e982f018e"

    static func runtime(status: String = "Up", info: String = "i1") -> JSONValue {
        [Self.uuid: ["status": .string(status), "cpuUser": 1, "cpuSys": .double(0.5), "statsAge": .double(0.2),
                     "hashes": ["info": .string(info), "config": "c1", "status": "s1", "guestDetails": "g1"]]]
    }

    /// A good agent: runtime, details with a name, empty device stats and billing.
    static func good(_ method: String) -> ScriptedAgent.Reply {
        switch method {
        case "Host.getAllVmRuntimeStats": return .result(runtime())
        case "VM.getConfInfo": return .result([Self.uuid: ["vmName": "web-1", "pid": 42]])
        case "VM.getStatus": return .result([Self.uuid: ["pauseCode": "NOERR"]])
        case "VM.getGuestDetails": return .result([Self.uuid: [:]])
        case "Host.getAllVmDeviceStats": return .result([Self.uuid: ["disks": []]])
        case "Host.getBillingRecords": return .result(["ledger": "L", "records": [], "gaps": [], "next": 0, "nextGap": 0, "more": false])
        default: return .error(code: -32601, message: "no method")
        }
    }

    final class Fixture: @unchecked Sendable {
        let dir = "/tmp/vmpulse-badagent-\(UUID().uuidString.prefix(8))"
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        let keeper: StoreKeeper
        var config = EngineConfig()

        init() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            keeper = StoreKeeper(location: .sqlite(path: dir + "/fleet.sqlite"), logger: Logger(label: "test"))
            config.timeout = 1
            config.runtimeInterval = 1
        }

        func poller(_ agent: ScriptedAgent, name: String = "fake") -> HostPoller {
            let rpc = AgentRPC(endpoint: AgentEndpoint(name: name, host: "127.0.0.1", port: agent.port), client: client, token: nil, timeout: config.timeout)
            return HostPoller(rpc: rpc, config: config, keeper: keeper, logger: Logger(label: "test"))
        }

        func store() async throws -> FleetStore { try await FleetStore.open(.sqlite(path: dir + "/fleet.sqlite")) }

        func close() async {
            await keeper.close()
            try? await client.shutdown()
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func anAgentThatAnswersGarbageIsAProblemAndThenStale() async throws {
        let f = try Fixture()
        let agent = try ScriptedAgent { _ in .body("<html>not an agent</html>") }
        let p = f.poller(agent)
        #expect(await p.poll() == false)
        var host = try #require(try await f.store().hosts().first)
        #expect(host.state == .up, "one failed poll is not yet stale")
        #expect(host.problem?.contains("not a vmpulse answer") == true, "\(host.problem ?? "")")
        #expect(await p.poll() == false)
        host = try #require(try await f.store().hosts().first)
        #expect(host.state == .stale)
        #expect(host.lastAnswer == nil)
        agent.stop()
        await f.close()
    }

    @Test func anAgentThatHangsMidAnswerHoldsUpNoOtherHost() async throws {
        let f = try Fixture()
        let hanging = try ScriptedAgent { _ in .hang(length: 10_000, first: #"{"jsonrpc": "2.0", "id": 1, "res"#) }
        let good = try ScriptedAgent(Self.good)
        let slow = f.poller(hanging, name: "hanging"), fast = f.poller(good, name: "good")
        let clock = ContinuousClock()
        async let slowPoll: (Bool, Duration) = { let t = clock.now; let ok = await slow.poll(); return (ok, clock.now - t) }()
        async let fastPoll: (Bool, Duration) = { let t = clock.now; let ok = await fast.poll(); return (ok, clock.now - t) }()
        let (s, g) = await (slowPoll, fastPoll)
        #expect(s.0 == false && g.0 == true)
        #expect(s.1 >= .milliseconds(900) && s.1 < .seconds(3), "bounded by the 1 s timeout: \(s.1)")
        #expect(g.1 < s.1, "the good host is not held up: \(g.1) against \(s.1)")
        let hosts = try await f.store().hosts()
        #expect(hosts.first { $0.name == "hanging" }?.problem?.contains("agent hanging") == true, "\(hosts)")
        #expect(try await f.store().vms().map(\.host) == ["good"])
        hanging.stop()
        good.stop()
        await f.close()
    }

    @Test func aHashWhoseDetailCallFailsIsAskedAgainUntilItIsAnswered() async throws {
        let f = try Fixture()
        let agent = try ScriptedAgent { method in
            method == "VM.getConfInfo" ? .error(code: -32603, message: "internal") : Self.good(method)
        }
        let p = f.poller(agent)
        #expect(await p.poll() == true, "the runtime view was answered")
        var vm = try #require(try await f.store().vms().first)
        #expect(vm.report.status == "Up" && vm.report.conf == nil && vm.report.name == nil)
        #expect(try await f.store().hosts().first?.problem?.contains("VM.getConfInfo") == true)
        #expect(await p.poll() == true)
        #expect(agent.called.filter { $0 == "VM.getConfInfo" }.count == 2, "asked again: \(agent.called)")
        #expect(agent.called.filter { $0 == "VM.getStatus" }.count == 1, "the other verbs were answered: not again")
        agent.setScript(Self.good)
        #expect(await p.poll() == true)
        vm = try #require(try await f.store().vms().first)
        #expect(vm.report.name == "web-1")
        #expect(try await f.store().hosts().first?.problem == nil)
        #expect(await p.poll() == true)
        #expect(agent.called.filter { $0 == "VM.getConfInfo" }.count == 3, "answered once: not asked again while the hash holds")
        // The hash changes: asked once more.
        agent.setScript { $0 == "Host.getAllVmRuntimeStats" ? .result(Self.runtime(info: "i2")) : Self.good($0) }
        #expect(await p.poll() == true)
        #expect(agent.called.filter { $0 == "VM.getConfInfo" }.count == 4)
        agent.stop()
        await f.close()
    }

    @Test func aLyingBillingPageCopiesNothingAndKeepsTheCursor() async throws {
        let f = try Fixture()
        let row: JSONValue = .object([
            "rev": 1, "vm_uuid": .string(Self.uuid), "vm_name": "web-1", "disk": "drive0", "disk_path": "/d", "period_start": 0,
            "period_end": 3600, "samples": 1,
        ].merging(IOCounter.allCases.map { ($0.name, JSONValue.uint(5)) }, uniquingKeysWith: { a, _ in a }))
        var lie = row.objectValue ?? [:]
        lie["write_bytes"] = .int(-1)
        let bad = lie
        let page = { @Sendable (r: JSONValue, next: Int64) -> ScriptedAgent.Reply in
            .result(["ledger": "L", "records": [r], "gaps": [], "next": .int(next), "nextGap": 0, "more": false])
        }
        let agent = try ScriptedAgent { $0 == "Host.getBillingRecords" ? page(.object(bad), 1) : Self.good($0) }
        let p = f.poller(agent)
        #expect(await p.copyBilling() == false)
        #expect(try await f.store().billing().isEmpty)
        let cursor = try await f.store().cursor(host: "fake")
        #expect(cursor == nil, "no cursor moved: \(String(describing: cursor))")
        agent.setScript { $0 == "Host.getBillingRecords" ? page(row, 1) : Self.good($0) }
        #expect(await p.copyBilling() == true)
        #expect(try await f.store().billing().first?.usage.usage[.writeBytes] == 5)
        #expect(try await f.store().cursor(host: "fake") == BillingCursor(ledger: "L", revision: 1, gap: 0))
        // A ledger the cursor does not belong to (replaced on the host): copied from its start.
        agent.setScript { method in
            guard method == "Host.getBillingRecords" else { return Self.good(method) }
            return .result(["ledger": "L2", "records": [row], "gaps": [], "next": 1, "nextGap": 0, "more": false])
        }
        #expect(await p.copyBilling() == true)
        #expect(try await f.store().billing().first?.usage.usage[.writeBytes] == 10, "both ledgers' rows, summed for the host")
        agent.stop()
        await f.close()
    }
}
