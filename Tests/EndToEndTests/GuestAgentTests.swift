import Foundation
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Guest data from a real qemu-ga in the test guest: on the QMP backend through the agent's
/// own connection to the guest-agent port (`NAME.qga` beside the monitor), on the libvirt
/// backend through libvirt's (the domain's `org.qemu.guest_agent.0` channel).
@Suite(.serialized) struct GuestAgentTests {
    static func wait(_ agent: AgentProcess, _ method: String, _ params: JSONValue? = nil, timeout: Duration = .seconds(30),
                     _ done: (JSONValue) -> Bool) async throws -> JSONValue {
        try await HostAPITests.wait(agent, method, params, timeout: timeout, done)
    }

    @Test(arguments: TestBackend.allCases) func guestFieldsComeFromTheGuestAgentAndTheirHashFollowsTheAddress(backend: TestBackend) async throws {
        let bed = try backend.makeBed(prefix: "qga")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "qga-1")
        spec.guestAgent = true
        spec.userNetwork = true
        spec.disks = [DiskSpec(), DiskSpec(sizeMiB: 32)]
        let guest = try bed.launch(spec)
        let plain = try bed.launch(GuestSpec(name: "qga-none"))
        try await guest.waitReady()
        try await plain.waitReady()
        let shell = try await guest.shell()
        let address = "10.77.\(Int.random(in: 1...250)).\(Int.random(in: 2...250))"
        _ = try await shell.check("ip link set eth0 up && ip addr add \(address)/24 dev eth0")
        _ = try await shell.check("mke2fs -q /dev/vdb && mkdir -p /mnt && mount /dev/vdb /mnt")
        let release = try await shell.check("uname -r").trimmingCharacters(in: .whitespacesAndNewlines)
        let agent = try bed.agent(interval: 0.5, fullInterval: 1)
        try await agent.waitReady()
        let ids: JSONValue = ["vmIDs": [.string(guest.uuid), .string(plain.uuid)]]

        let status = try await Self.wait(agent, "VM.getStatus", ids) { $0[guest.uuid]?["guestIPs"]?.stringValue?.contains(address) == true }
        let s = try #require(status[guest.uuid])
        #expect(s["guestIPs"]?.stringValue == address, "the one IPv4 address the test gave eth0 (lo left out): \(s)")
        #expect(abs(s["timeOffset"]?.int64Value ?? 99) <= 2, "the guest's clock is the host's: \(s)")
        #expect(s["session"] == "LoggedOff" || s["session"] == nil, "nobody logs in to the test guest: \(s)")
        #expect(s["username"] == nil)
        // The guest without an agent: its guest fields are absent, the rest is there.
        let p = try #require(status[plain.uuid])
        #expect(p["guestIPs"] == nil && p["timeOffset"] == nil && p["session"] == nil, "\(p)")
        #expect(p["monitorResponse"] == .int(0))

        let details = try agent.result("VM.getGuestDetails", ids)
        let d = try #require(details[guest.uuid])
        let apps = d["appsList"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(apps.contains("kernel-\(release)"), "\(apps)")
        if backend == .qmp {
            #expect(apps.contains { $0.hasPrefix("qemu-guest-agent-7.") }, "\(apps)")
        } else {
            #expect(!apps.contains { $0.hasPrefix("qemu-guest-agent") }, "libvirt does not give the agent's version: \(apps)")
        }
        let eth0 = d["netIfaces"]?.arrayValue?.first { $0["name"] == "eth0" }
        #expect(eth0?["inet"] == .array([.string(address)]))
        #expect(eth0?["hw"]?.stringValue?.count == 17)
        #expect(details[plain.uuid] == .object([:]))
        let usage = try agent.result("Host.getAllVmDeviceStats")[guest.uuid]?["disksUsage"]?.arrayValue ?? []
        let mnt = usage.first { $0["path"] == "/mnt" }
        #expect(mnt?["fs"] == "ext2")
        #expect((mnt?["total"]?.uint64Value ?? 0) > 16 << 20 && (mnt?["total"]?.uint64Value ?? 0) <= 32 << 20, "\(usage)")

        // The guestDetails hash stays while nothing changes, and changes with the address
        // (once the kernel has given eth0 its IPv6 link-local address, which is a change).
        _ = try await Self.wait(agent, "VM.getGuestDetails", ids) { r in
            r[guest.uuid]?["netIfaces"]?.arrayValue?.first { $0["name"] == "eth0" }?["inet6"]?.arrayValue?.isEmpty == false
        }
        try await Task.sleep(for: .seconds(2))
        let hashes = try #require(try agent.result("Host.getAllVmRuntimeStats")[guest.uuid]?["hashes"])
        for _ in 0..<3 {
            try await Task.sleep(for: .seconds(1))
            #expect(try agent.result("Host.getAllVmRuntimeStats")[guest.uuid]?["hashes"]?["guestDetails"] == hashes["guestDetails"])
        }
        let second = "10.78.\(Int.random(in: 1...250)).\(Int.random(in: 2...250))"
        _ = try await shell.check("ip addr del \(address)/24 dev eth0 && ip addr add \(second)/24 dev eth0")
        _ = try await Self.wait(agent, "VM.getStatus", ids) { $0[guest.uuid]?["guestIPs"]?.stringValue == second }
        let moved = try agent.result("Host.getAllVmRuntimeStats")[guest.uuid]?["hashes"]
        #expect(moved?["guestDetails"] != hashes["guestDetails"])
        #expect(moved?["status"] != hashes["status"], "guestIPs is a status field too")
        #expect(moved?["config"] == hashes["config"] && moved?["info"] == hashes["info"])

        // A guest agent that stops answering: its fields go, statsAge says the rest is fresh.
        _ = try await shell.check("kill -STOP $(pidof qemu-ga)")
        let silent = try await Self.wait(agent, "VM.getStatus", ids, timeout: .seconds(40)) { $0[guest.uuid]?["guestIPs"] == nil }
        #expect(silent[guest.uuid]?["monitorResponse"] == .int(0))
        #expect((try agent.result("Host.getAllVmRuntimeStats")[guest.uuid]?["statsAge"]?.doubleValue ?? 99) < 2)
        _ = try await shell.check("kill -CONT $(pidof qemu-ga)")
        _ = try await Self.wait(agent, "VM.getStatus", ids, timeout: .seconds(40)) { $0[guest.uuid]?["guestIPs"]?.stringValue == second }
        await shell.close()
        #expect(try await agent.stop() == 0)
    }
}
