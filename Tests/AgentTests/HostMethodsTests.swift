@testable import API
@testable import Agent
import Hypervisor
import Testing
import VMPulseCore

/// The engine verbs over the agent's real snapshot store, filled with readings as the
/// sampler publishes them: fields, absent fields, hashes, per-VM errors and bad parameters.
@Suite struct HostMethodsTests {
    static func vm(_ name: String, uuid: String, state: Int64 = 1, reason: Int64 = 1, balloon: (UInt64, UInt64)? = (1000, 250),
                   devices: [String] = ["peripheral/disk0 child<virtio-blk-pci>"], pid: Int32 = 4242) -> VMSnapshot {
        var full = [StatsParam("state.state", .int(state)), StatsParam("state.reason", .int(reason)), StatsParam("cpu.time", .uint(5_000_000_000))]
        if let (available, usable) = balloon {
            full += [StatsParam("balloon.current", .uint(1024)), StatsParam("balloon.maximum", .uint(2048)),
                     StatsParam("balloon.available", .uint(available)), StatsParam("balloon.usable", .uint(usable)), StatsParam("balloon.rss", .uint(9))]
        }
        full += [StatsParam("net.count", .uint(1)), StatsParam("net.0.name", .string("tap0")), StatsParam("net.0.rx.bytes", .uint(77)),
                 StatsParam("block.count", .uint(1)), StatsParam("block.0.name", .string("drive0")), StatsParam("block.0.rd.bytes", .uint(512))]
        let description = MachineDescription(pid: pid, kvm: false, acpi: true,
                                             display: .init(type: "vnc", address: "127.0.0.1", port: 5901), displayClients: ["127.0.0.1"],
                                             boot: "c", devices: devices)
        return VMSnapshot(machine: "/run/\(name).sock", name: name, uuid: uuid, full: full, responsive: true, errors: [],
                          lastAnswer: MonotonicTime.now() - 0.5, description: description,
                          cpu: CPUUsage(user: 12.345, system: 1.5, interval: 5), startedAt: MonotonicTime.wallNow() - 100)
    }

    static func methods(_ vms: [VMSnapshot], book: StatusBook? = nil) -> HostMethods {
        let store = SnapshotStore()
        for vm in vms { store.publish(vm) }
        return HostMethods(store: store, book: book, thin: nil)
    }

    func call(_ m: HostMethods, _ method: String, _ params: JSONValue? = nil) -> Result<JSONValue, RPCError> {
        m.call(RPCCall(method: method, params: params, id: 1))
    }

    func result(_ m: HostMethods, _ method: String, _ params: JSONValue? = nil) throws -> JSONValue {
        try call(m, method, params).get()
    }

    @Test func runtimeStatsHaveTheProposalsFields() throws {
        let m = Self.methods([Self.vm("a", uuid: "u-a"), Self.vm("b", uuid: "u-b", balloon: nil)])
        let r = try result(m, "Host.getAllVmRuntimeStats")
        let a = try #require(r["u-a"])
        #expect(a["status"] == "Up")
        #expect(a["cpuUser"] == .double(12.35))
        #expect(a["cpuSys"] == .double(1.5))
        #expect(a["memUsage"] == .double(75))
        #expect((100...101).contains(a["elapsedTime"]?.int64Value ?? 0))
        #expect((0.4...1.5).contains(a["statsAge"]?.doubleValue ?? -1))
        #expect(Set(a["hashes"]?.objectValue?.keys ?? [:].keys) == ["info", "config", "status", "guestDetails"])
        // No balloon statistics from the guest: no memUsage, never a guess.
        #expect(r["u-b"]?["memUsage"] == nil)
        #expect(r["u-b"]?["status"] == "Up")
    }

    @Test func statusNamesFollowTheEngine() {
        #expect(EngineStatus.name(state: 1, reason: 1) == "Up")
        #expect(EngineStatus.name(state: 3, reason: 1) == "Paused")
        #expect(EngineStatus.name(state: 3, reason: 5) == "Paused")
        #expect(EngineStatus.name(state: 3, reason: 2) == "Migration Source")
        #expect(EngineStatus.name(state: 3, reason: 3) == "Saving State")
        #expect(EngineStatus.name(state: 5, reason: 0) == "Down")
        #expect(EngineStatus.name(state: 7, reason: 0) == "Suspended")
        #expect(EngineStatus.name(state: -1, reason: 0) == "Unknown")
        #expect(EngineStatus.name(state: Int64.max, reason: Int64.min) == "Unknown")
    }

    @Test func pauseCodesComeFromEventsThenFromQEMUsIOStatus() throws {
        var paused = Self.vm("p", uuid: "u-p", state: 3, reason: 5)
        paused.description?.diskErrors = ["drive0": "nospace"]
        var failed = Self.vm("f", uuid: "u-f", state: 3, reason: 5)
        failed.description?.diskErrors = ["drive0": "failed"]
        let operator_ = Self.vm("o", uuid: "u-o", state: 3, reason: 1)
        let m = Self.methods([paused, failed, operator_, Self.vm("r", uuid: "u-r")])
        let s = try result(m, "VM.getStatus", ["vmIDs": ["u-p", "u-f", "u-o", "u-r"]])
        #expect(s["u-p"]?["pauseCode"] == "ENOSPC")
        #expect(s["u-f"]?["pauseCode"] == "EIO")
        #expect(s["u-o"]?["pauseCode"] == "EOTHER")
        #expect(s["u-r"]?["pauseCode"] == "NOERR")
        #expect(s["u-r"]?["monitorResponse"] == .int(0))
        #expect(s["u-r"]?["clientIp"] == "127.0.0.1")
    }

    @Test func eventsOverrideAnOlderFullPass() throws {
        let (events, _) = AsyncStream.makeStream(of: MachineEvent.self)
        let store = SnapshotStore()
        store.publish(Self.vm("e", uuid: "u-e"))
        let bus = AgentEventBus()
        let subscription = bus.subscribe(kinds: [.status, .ioError], backlog: 10)
        let book = StatusBook(events: events, store: store, bus: bus)
        let m = HostMethods(store: store, book: book, thin: nil)
        book.handle(MachineEvent(machine: "/run/e.sock", connection: 1, kind: .ioError(node: "n", device: "drive0", noSpace: true, paused: true), receivedAt: 0))
        book.handle(MachineEvent(machine: "/run/e.sock", connection: 1, kind: .paused, receivedAt: 0))
        #expect(try result(m, "Host.getAllVmRuntimeStats")["u-e"]?["status"] == "Paused")
        #expect(try result(m, "VM.getStatus", ["vmIDs": ["e"]])["e"]?["pauseCode"] == "ENOSPC")
        book.handle(MachineEvent(machine: "/run/e.sock", connection: 1, kind: .resumed, receivedAt: 0))
        #expect(try result(m, "Host.getAllVmRuntimeStats")["u-e"]?["status"] == "Up")
        #expect(try result(m, "VM.getStatus", ["vmIDs": ["u-e"]])["u-e"]?["pauseCode"] == "NOERR")
        bus.unsubscribe(subscription)
    }

    @Test func confInfoAndDeviceStatsComeFromTheDescriptionAndTheRecord() throws {
        let m = Self.methods([Self.vm("a", uuid: "u-a")])
        let c = try #require(try result(m, "VM.getConfInfo", [["u-a"]])["u-a"])
        #expect(c == ["acpiEnable": true, "kvmEnable": false, "pid": 4242, "vmType": "kvm", "vmName": "a", "displayType": "vnc", "displayIp": "127.0.0.1",
                      "displayPort": 5901, "boot": "c"])
        let d = try #require(try result(m, "Host.getAllVmDeviceStats")["u-a"])
        #expect(d["balloonInfo"] == ["balloon_cur": .uint(1024), "balloon_max": .uint(2048)])
        #expect(d["memoryStats"]?["available"] == .uint(1000))
        #expect(d["memoryStats"]?["rss"] == nil, "rss is the host's, not the guest's")
        #expect(d["network"] == [["name": "tap0", "rx.bytes": .uint(77)]])
        #expect(d["disks"]?.arrayValue?.first?["rd.bytes"] == .uint(512))
        #expect(try result(m, "VM.getGuestDetails", ["vmIDs": ["u-a"]])["u-a"] == .object([:]))
    }

    @Test func guestAgentFieldsComeFromTheGuestInfoAndAreAbsentWithout() throws {
        var info = GuestInfo()
        info.agentVersion = "7.2.0"
        info.kernelRelease = "6.1.0-57-cloud-amd64"
        info.interfaces = [.init(name: "lo", addresses: [.init(type: "ipv4", address: "127.0.0.1", prefix: 8)]),
                           .init(name: "eth0", hardwareAddress: "52:54:00:12:34:56", addresses: [
                               .init(type: "ipv4", address: "10.0.0.5", prefix: 24), .init(type: "ipv4", address: "10.0.1.5", prefix: 24),
                               .init(type: "ipv6", address: "fe80::1", prefix: 64)])]
        info.users = [.init(name: "alice", loginTime: 1.7e9)]
        info.timeOffset = -3
        info.filesystems = [.init(mountpoint: "/", type: "ext4", totalBytes: 100, usedBytes: 40)]
        var withAgent = Self.vm("g", uuid: "u-g")
        withAgent.guest = info
        let m = Self.methods([withAgent, Self.vm("n", uuid: "u-n")])
        let s = try result(m, "VM.getStatus", ["vmIDs": ["u-g", "u-n"]])
        #expect(s["u-g"]?["guestIPs"] == "10.0.0.5 10.0.1.5")
        #expect(s["u-g"]?["timeOffset"] == .int(-3))
        #expect(s["u-g"]?["username"] == "alice" && s["u-g"]?["session"] == "UserLoggedOn")
        #expect(s["u-n"]?["guestIPs"] == nil && s["u-n"]?["session"] == nil && s["u-n"]?["timeOffset"] == nil)
        let d = try result(m, "VM.getGuestDetails", ["vmIDs": ["u-g"]])["u-g"]
        #expect(d?["appsList"] == ["kernel-6.1.0-57-cloud-amd64", "qemu-guest-agent-7.2.0"])
        #expect(d?["netIfaces"]?.arrayValue?.last == ["name": "eth0", "hw": "52:54:00:12:34:56", "inet": ["10.0.0.5", "10.0.1.5"], "inet6": ["fe80::1"]])
        let usage = try result(m, "Host.getAllVmDeviceStats")["u-g"]?["disksUsage"]
        #expect(usage == [["path": "/", "fs": "ext4", "total": .uint(100), "used": .uint(40)]])
        #expect(try result(m, "Host.getAllVmDeviceStats")["u-n"]?["disksUsage"] == nil)
        // Nobody logged in: LoggedOff and no username; another address: another hash.
        withAgent.guest?.users = []
        withAgent.guest?.interfaces?[1].addresses[0].address = "10.0.0.6"
        let after = Self.methods([withAgent])
        #expect(try result(after, "VM.getStatus", ["vmIDs": ["u-g"]])["u-g"]?["session"] == "LoggedOff")
        let before = try result(m, "Host.getAllVmRuntimeStats")["u-g"]?["hashes"]
        let now = try result(after, "Host.getAllVmRuntimeStats")["u-g"]?["hashes"]
        #expect(now?["guestDetails"] != before?["guestDetails"] && now?["status"] != before?["status"])
        #expect(now?["config"] == before?["config"] && now?["info"] == before?["info"])
    }

    @Test func hashesAreOfTheDataAndOnlyOfIt() throws {
        // The same data in another store (another agent, after a restart) gives the same hashes.
        let one = try result(Self.methods([Self.vm("a", uuid: "u-a")]), "Host.getAllVmRuntimeStats")["u-a"]?["hashes"]
        let two = try result(Self.methods([Self.vm("a", uuid: "u-a")]), "Host.getAllVmRuntimeStats")["u-a"]?["hashes"]
        #expect(one != nil && one == two)
        // A hot-plugged disk changes config only; a new pid changes info only.
        let plugged = try result(Self.methods([Self.vm("a", uuid: "u-a", devices: ["peripheral/disk0 child<virtio-blk-pci>", "peripheral/hp child<virtio-blk-pci>"])]),
                                 "Host.getAllVmRuntimeStats")["u-a"]?["hashes"]
        #expect(plugged?["config"] != one?["config"])
        #expect(plugged?["info"] == one?["info"] && plugged?["status"] == one?["status"])
        let restarted = try result(Self.methods([Self.vm("a", uuid: "u-a", pid: 99)]), "Host.getAllVmRuntimeStats")["u-a"]?["hashes"]
        #expect(restarted?["info"] != one?["info"])
        #expect(restarted?["config"] == one?["config"])
        // Paused: the status hash changes (pauseCode), the others do not.
        let paused = try result(Self.methods([Self.vm("a", uuid: "u-a", state: 3, reason: 1)]), "Host.getAllVmRuntimeStats")["u-a"]?["hashes"]
        #expect(paused?["status"] != one?["status"])
        #expect(paused?["info"] == one?["info"] && paused?["guestDetails"] == one?["guestDetails"])
        #expect(one?["info"]?.stringValue?.count == 16)
    }

    @Test func unknownAndAmbiguousVMsGetTheirOwnErrorsWhileOthersAreAnswered() throws {
        let m = Self.methods([Self.vm("a", uuid: "u-a"), Self.vm("twin1", uuid: "u-t"), Self.vm("twin2", uuid: "u-t")])
        let s = try result(m, "VM.getConfInfo", ["vmIDs": ["u-a", "nope", "u-t"]])
        #expect(s["u-a"]?["pid"] == 4242)
        #expect(s["nope"]?["error"]?["code"] == .int(-32001))
        #expect(s["u-t"]?["error"]?["code"] == .int(-32002))
        #expect(s["u-t"]?["error"]?["message"]?.stringValue?.contains("twin1, twin2") == true)
        let r = try result(m, "Host.getAllVmRuntimeStats")
        #expect(r["u-t"]?["error"]?["code"] == .int(-32002))
        #expect(r["u-a"]?["status"] == "Up")
    }

    @Test func wrongParametersAre32602() {
        let m = Self.methods([Self.vm("a", uuid: "u-a")])
        let bad: [(String, JSONValue?)] = [
            ("VM.getStatus", nil), ("VM.getStatus", ["vmIDs": "u-a"]), ("VM.getStatus", ["vmIDs": [1]]), ("VM.getStatus", ["vmIDs": []]),
            ("VM.getStatus", ["vmIDs": ["u-a"], "extra": 1]), ("VM.getStatus", [["u-a"], ["u-b"]]), ("VM.getConfInfo", ["vmids": ["u-a"]]),
            ("Host.getAllVmRuntimeStats", ["x": 1]), ("Host.getAllDomainStats", ["enforce": "yes"]), ("Host.getAllDomainStats", ["groups": [true]]),
            ("VM.getStatus", ["vmIDs": .array(Array(repeating: "u-a", count: 10_001))]),
        ]
        for (method, params) in bad {
            guard case .failure(let error) = call(m, method, params) else {
                Issue.record("\(method) \(params.map(JSONText.serialize) ?? "") was answered")
                continue
            }
            #expect(error.code == -32602, "\(method): \(error)")
        }
        if case .failure(let e) = call(m, "VM.nope") { #expect(e.code == -32601) } else { Issue.record("VM.nope answered") }
        if case .failure(let e) = call(m, "subscribe") { #expect(e.code == -32004) } else { Issue.record("subscribe over HTTP answered") }
    }

    @Test func domainStatsAreTheStatsRecordsWithEnforce() throws {
        let m = Self.methods([Self.vm("a", uuid: "u-a"), Self.vm("b", uuid: "u-b")])
        let all = try result(m, "Host.getAllDomainStats", ["groups": ["block"], "vmIDs": ["a", "ghost"]])
        let records = try #require(all["records"]?.arrayValue)
        #expect(records.count == 1)
        #expect(records[0]["params"]?["block.0.rd.bytes"] == .uint(512))
        #expect(records[0]["params"]?["state.state"] == nil)
        #expect(all["unknown"]?["ghost"]?["code"] == .int(-32001))
        let leftOut = try result(m, "Host.getAllDomainStats", ["groups": ["perf"]])
        #expect(leftOut["leftOut"] == ["perf"])
        guard case .failure(let refused) = call(m, "Host.getAllDomainStats", ["groups": ["perf"], "enforce": true]) else {
            Issue.record("enforce did not refuse perf")
            return
        }
        #expect(refused.code == -32003)
    }

    @Test func discoverDescribesEveryMethod() throws {
        let doc = try result(Self.methods([]), "rpc.discover")
        let names = Set(doc["methods"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? [])
        #expect(names == Set(HostMethods.methods.keys).union(["subscribe"]))
        #expect(doc["openrpc"] == "1.2.6")
    }
}
