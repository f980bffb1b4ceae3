import Foundation
import Glibc
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The engine verbs of the host API against real guests on both backends: every field
/// that this host can know, from the QEMU the test started, and the hashes' behaviour.
@Suite(.serialized) struct HostAPITests {
    /// Polls `method` until `done` holds for its result, or fails after `timeout`.
    static func wait(_ agent: AgentProcess, _ method: String, _ params: JSONValue? = nil, timeout: Duration = .seconds(20),
                     _ done: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var last: JSONValue = .null
        while ContinuousClock.now < deadline {
            last = try agent.result(method, params)
            if done(last) { return last }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestBedError("\(method) did not get there within \(timeout): \(JSONText.serialize(last).prefix(1500))")
    }

    static func spec(_ name: String, bed: any GuestBed) throws -> GuestSpec {
        var spec = GuestSpec(name: name)
        spec.vncDisplay = Int.random(in: 20_000...39_000)
        spec.bootOrder = "cd"
        let image = bed.directory + "/\(name)-cd.iso"
        FileManager.default.createFile(atPath: image, contents: Data(count: 1 << 20))
        spec.cdrom = image
        return spec
    }

    @Test(arguments: TestBackend.allCases) func everyVerbAnswersWithWhatQEMUHas(backend: TestBackend) async throws {
        let bed = try backend.makeBed(prefix: "rpc")
        defer { bed.shutdown() }
        let spec = try Self.spec("rpc-1", bed: bed)
        let started = Date().timeIntervalSince1970
        let guest = try bed.launch(spec)
        let plain = try bed.launch(GuestSpec(name: "rpc-2"))
        try await guest.waitReady()
        try await plain.waitReady()
        let agent = try bed.agent(interval: 0.5, fullInterval: 1)
        try await agent.waitReady()

        // Runtime: CPU needs two full passes, memUsage the balloon's guest statistics.
        let runtime = try await Self.wait(agent, "Host.getAllVmRuntimeStats") { r in
            [guest.uuid, plain.uuid].allSatisfy { r[$0]?["cpuUser"] != nil && r[$0]?["memUsage"] != nil }
        }
        for uuid in [guest.uuid, plain.uuid] {
            let vm = try #require(runtime[uuid])
            #expect(vm["status"] == "Up")
            #expect((0...200).contains(vm["cpuUser"]?.doubleValue ?? -1))
            #expect((0...200).contains(vm["cpuSys"]?.doubleValue ?? -1))
            #expect((1...99).contains(vm["memUsage"]?.doubleValue ?? -1), "a booted 128 MiB guest uses some memory: \(vm)")
            let elapsed = try #require(vm["elapsedTime"]?.int64Value)
            #expect(elapsed >= 0 && Double(elapsed) <= Date().timeIntervalSince1970 - started + 2)
            #expect((0...3).contains(vm["statsAge"]?.doubleValue ?? -1))
            for key in ["info", "config", "status", "guestDetails"] {
                #expect(vm["hashes"]?[key]?.stringValue?.count == 16, "\(key)")
            }
        }
        #expect(runtime[guest.uuid]?["hashes"]?["config"] != runtime[plain.uuid]?["hashes"]?["config"], "different disks, different config")
        #expect(runtime[guest.uuid]?["hashes"]?["guestDetails"] == runtime[plain.uuid]?["hashes"]?["guestDetails"])

        // Configuration: from QEMU (QMP) or libvirt's live XML.
        let conf = try agent.result("VM.getConfInfo", ["vmIDs": [.string(guest.uuid), .string(plain.uuid)]])
        let c = try #require(conf[guest.uuid])
        #expect(c["pid"]?.int64Value == Int64(guest.pid))
        #expect(c["vmType"] == "kvm")
        #expect(c["kvmEnable"] == false, "the test guests run on TCG")
        #expect(c["acpiEnable"] == true)
        #expect(c["displayType"] == "vnc")
        #expect(c["displayPort"]?.int64Value == Int64(5900 + (spec.vncDisplay ?? 0)))
        #expect(c["displayIp"] == "127.0.0.1")
        #expect(c["displaySecurePort"] == nil, "no TLS display: absent")
        #expect(c["cdrom"]?.stringValue == spec.cdrom)
        #expect(c["boot"] == "cd")
        let p = try #require(conf[plain.uuid])
        #expect(p["pid"]?.int64Value == Int64(plain.pid))
        #expect(p["displayType"] == nil && p["displayPort"] == nil && p["cdrom"] == nil, "no display, no CD-ROM: absent, \(p)")

        // Status: no viewer yet; then a VNC viewer connects and its address shows.
        let before = try agent.result("VM.getStatus", ["vmIDs": [.string(guest.uuid)]])[guest.uuid]
        #expect(before?["monitorResponse"] == .int(0))
        #expect(before?["pauseCode"] == "NOERR")
        if backend == .qmp {
            #expect(before?["clientIp"] == "")
            let statusHash = runtime[guest.uuid]?["hashes"]?["status"]
            let viewer = try RawVNC.connect(display: spec.vncDisplay ?? 0)
            let seen = try await Self.wait(agent, "VM.getStatus", ["vmIDs": [.string(guest.uuid)]]) { $0[guest.uuid]?["clientIp"] == "127.0.0.1" }
            #expect(seen[guest.uuid]?["pauseCode"] == "NOERR")
            let after = try agent.result("Host.getAllVmRuntimeStats")[guest.uuid]?["hashes"]?["status"]
            #expect(after != statusHash, "a new display client changes the status hash")
            withExtendedLifetime(viewer) {}
        } else {
            #expect(before?["clientIp"] == nil, "libvirt does not list display clients: absent, never a guess")
        }

        // Devices: the disk's counters are QEMU's, and its windows are there.
        let devices = try agent.result("Host.getAllVmDeviceStats")
        let d = try #require(devices[plain.uuid])
        #expect(d["balloonInfo"]?["balloon_max"]?.uint64Value == 128 * 1024)
        #expect((d["memoryStats"]?["available"]?.uint64Value ?? 0) > 0)
        let disk = try #require(d["disks"]?.arrayValue?.first)
        #expect((disk["rd.bytes"]?.uint64Value ?? 0) > 0, "the guest read its disk at boot")
        #expect(disk["io"]?["read_bytes"] == disk["rd.bytes"])
        #expect(disk["io"]?["window_seconds.1s"] != nil)
        #expect(d["network"] == .array([]))
        #expect(d["disksUsage"] == nil, "no guest agent: absent")

        // Domain stats: the records of vmpulse stats, with enforce and per-VM errors.
        let stats = try agent.result("Host.getAllDomainStats", ["groups": ["state", "block"], "vmIDs": [.string(plain.name), "ghost"]])
        let record = try #require(stats["records"]?.arrayValue?.first)
        #expect(stats["records"]?.arrayValue?.count == 1)
        #expect(record["uuid"]?.stringValue == plain.uuid)
        #expect(record["params"]?["state.state"] == .int(1))
        #expect(record["params"]?["block.0.rd.bytes"] == disk["rd.bytes"])
        #expect(stats["unknown"]?["ghost"]?["code"] == .int(-32001))
        let refused = try agent.rpc("Host.getAllDomainStats", ["groups": ["perf"], "enforce": true])
        #expect(refused["error"]?["code"] == .int(-32003))

        // Guest details: nothing without a guest agent; an unknown id is its own error.
        let details = try agent.result("VM.getGuestDetails", ["vmIDs": [.string(guest.uuid), "no-such-vm"]])
        #expect(details[guest.uuid] == .object([:]))
        #expect(details["no-such-vm"]?["error"]?["code"] == .int(-32001))
        #expect(try await agent.stop() == 0)
    }

    @Test func theConfigHashChangesOnAHotPluggedDiskAndEveryHashSurvivesARestart() async throws {
        let bed = try TestBed(prefix: "rpchash")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "hash-1")
        spec.extraArguments = ["-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1"]  // q35's root bus takes no hot-plug
        let guest = try bed.launch(spec)
        try await guest.waitReady()
        let agent = try bed.agent(interval: 0.5, fullInterval: 1)
        try await agent.waitReady()
        let first = try await Self.wait(agent, "Host.getAllVmRuntimeStats") { $0[guest.uuid]?["cpuUser"] != nil }
        let hashes = try #require(first[guest.uuid]?["hashes"])
        // Unchanged while nothing changes (three more full passes, the guest running).
        for _ in 0..<3 {
            try await Task.sleep(for: .seconds(1))
            #expect(try agent.result("Host.getAllVmRuntimeStats")[guest.uuid]?["hashes"] == hashes)
        }
        // The same after a restart of the agent (a new process, new monitor connection).
        #expect(try await agent.stop() == 0, "\(agent.logText.suffix(3000))")
        try agent.start()
        try await agent.waitReady()
        let again = try await Self.wait(agent, "Host.getAllVmRuntimeStats") { $0[guest.uuid]?["hashes"]?["config"] != nil }
        #expect(again[guest.uuid]?["hashes"] == hashes, "another agent, the same data, the same hashes")

        // A disk hot-plugged through the test's own monitor changes config, and only config.
        let image = bed.directory + "/hotplug.qcow2"
        try TestBed.run("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", image, "16M"])
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        _ = try await control.execute("blockdev-add", arguments: [
            "driver": "qcow2", "node-name": "hp0", "file": ["driver": "file", "filename": .string(image)],
        ])
        _ = try await control.execute("device_add", arguments: ["driver": "virtio-blk-pci", "drive": "hp0", "id": "hotdisk", "bus": "rp1"])
        await control.close()
        let plugged = try await Self.wait(agent, "Host.getAllVmRuntimeStats") { $0[guest.uuid]?["hashes"]?["config"] != hashes["config"] }
        #expect(plugged[guest.uuid]?["hashes"]?["info"] == hashes["info"])
        #expect(plugged[guest.uuid]?["hashes"]?["guestDetails"] == hashes["guestDetails"])
        let devices = try agent.result("Host.getAllVmDeviceStats")[guest.uuid]?["disks"]?.arrayValue ?? []
        #expect(devices.count == 2, "the new disk is in the device stats too")
        #expect(try await agent.stop() == 0)
    }

    @Test func aThinDiskOutOfRoomPausesWithENOSPC() async throws {
        let bed = try TestBed(prefix: "rpcnospace")
        defer { bed.shutdown() }
        // A 16 MiB device behind a 1 GiB image and no thin-disk configuration: nobody extends it.
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 16, capacityMiB: 1024)
        defer { fixture.detach() }
        let guest = try bed.launch(fixture.guest(named: "full-1"))
        try await guest.waitReady()
        let agent = try bed.agent(interval: 0.5, fullInterval: 1)
        try await agent.waitReady()
        _ = try await Self.wait(agent, "Host.getAllVmRuntimeStats") { $0[guest.uuid]?["status"] == "Up" }
        let shell = try await guest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=64 oflag=direct >/dev/null 2>&1 &")
        let paused = try await Self.wait(agent, "VM.getStatus", ["vmIDs": [.string(guest.uuid)]]) { $0[guest.uuid]?["pauseCode"] == "ENOSPC" }
        #expect(paused[guest.uuid]?["monitorResponse"] == .int(0))
        #expect(try agent.result("Host.getAllVmRuntimeStats")[guest.uuid]?["status"] == "Paused")
        // An agent started after the pause finds the reason in QEMU's io-status.
        #expect(try await agent.stop() == 0)
        try agent.start()
        try await agent.waitReady()
        _ = try await Self.wait(agent, "VM.getStatus", ["vmIDs": [.string(guest.uuid)]]) { $0[guest.uuid]?["pauseCode"] == "ENOSPC" }
        await shell.close()
        #expect(try await agent.stop() == 0)
    }
}
