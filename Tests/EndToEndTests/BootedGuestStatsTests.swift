import Foundation
import Hypervisor
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Every group against booted test guests running known workloads.
@Suite(.serialized) struct BootedGuestStatsTests {
    static let mib: UInt64 = 1 << 20

    @Test func everyGroupIsReportedAndCountersFollowTheGuest() async throws {
        let bed = try TestBed(prefix: "e2e")
        defer { bed.shutdown() }
        let subnet = Int.random(in: 10...250)
        var netSpec = GuestSpec(name: "net-vm")
        netSpec.vcpus = 2
        netSpec.maxVCPUs = 4
        netSpec.tap = "vmpt\(String(UInt32.random(in: 0...0xFFFFFF), radix: 16))"
        let netGuest = try bed.launch(netSpec)
        let plain = try bed.launch(GuestSpec(name: "plain-vm"))
        try await netGuest.waitReady()
        try await plain.waitReady()
        try TestBed.run("/sbin/ip", ["addr", "add", "10.213.\(subnet).1/24", "dev", netSpec.tap ?? ""])

        var options = QMPBackend.Options()
        options.socketDirectory = bed.socketDirectory
        options.balloonStatsPeriod = 1
        let backend = QMPBackend(options: options)
        let groups: [StatsGroup] = [.state, .cpuTotal, .balloon, .vcpu, .interface, .block, .iothread]
        let before = try await backend.collect(groups: groups)
        #expect(before.map(\.name) == ["net-vm", "plain-vm"])

        // The guest writes 16 MiB with O_DIRECT and pings the host through its tap.
        let shell = try await netGuest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=16 oflag=direct")
        try await shell.check("ip link set eth0 up && ip addr add 10.213.\(subnet).2/24 dev eth0 && ping -c 3 -W 2 10.213.\(subnet).1")
        await shell.close()
        try await Task.sleep(for: .seconds(2))  // one balloon stats period and then some

        let after = try await backend.collect(groups: groups)
        await backend.close()
        let b = try #require(before.first { $0.name == "net-vm" })
        let a = try #require(after.first { $0.name == "net-vm" })
        for record in after {
            #expect(record.errors.isEmpty, "\(record.name): \(record.errors)")
            for prefix in ["state", "cpu", "balloon", "vcpu", "net", "block", "iothread"] {
                #expect(record.hasKeys(withPrefix: prefix), "\(record.name) has no \(prefix).* keys")
            }
            #expect(record["state.state"] == .int(1))
            #expect(record["state.status"] == .string("running"))
        }
        #expect(a.uuid == netGuest.uuid)

        func uint(_ r: StatsRecord, _ key: String) -> UInt64 {
            if case .uint(let v)? = r[key] { return v }
            Issue.record("\(r.name) has no uint \(key)")
            return 0
        }
        // Block: the guest's writes, to the byte.
        #expect(uint(a, "block.0.wr.bytes") - uint(b, "block.0.wr.bytes") == 16 * Self.mib)
        #expect(uint(a, "block.0.wr.reqs") - uint(b, "block.0.wr.reqs") >= 16)
        #expect(uint(a, "block.0.wr.times") > uint(b, "block.0.wr.times"))
        #expect(uint(a, "block.0.allocation") >= 16 * Self.mib)
        #expect(uint(a, "block.0.capacity") == 256 * Self.mib)
        #expect(a["block.0.name"] == .string("drive0"))
        #expect(a["block.0.path"] == .string(netGuest.disks[0]))
        // vCPUs: two running of four possible, each with a thread's time.
        #expect(a["vcpu.current"] == .uint(2))
        #expect(a["vcpu.maximum"] == .uint(4))
        #expect(uint(a, "vcpu.0.time") > 0 && uint(a, "vcpu.1.time") > 0)
        // CPU: the process's time grows while the guest works.
        #expect(uint(a, "cpu.time") > uint(b, "cpu.time"))
        #expect(uint(a, "cpu.time") == uint(a, "cpu.user") + uint(a, "cpu.system"))
        // Balloon: the VM's 128 MiB, and the guest's own figures.
        #expect(a["balloon.maximum"] == .uint(128 * 1024))
        #expect(a["balloon.current"] == .uint(128 * 1024))
        #expect(uint(a, "balloon.available") > 0 && uint(a, "balloon.available") <= 128 * 1024)
        #expect(uint(a, "balloon.unused") > 0)
        #expect(uint(a, "balloon.rss") > 0)
        // Interface: three echo requests out (plus ARP), three replies in, from the guest's side.
        #expect(a["net.count"] == .uint(1))
        #expect(a["net.0.name"] == .string(netSpec.tap ?? ""))
        #expect(uint(a, "net.0.tx.pkts") - uint(b, "net.0.tx.pkts") >= 3)
        #expect(uint(a, "net.0.rx.pkts") - uint(b, "net.0.rx.pkts") >= 3)
        #expect(uint(a, "net.0.tx.bytes") - uint(b, "net.0.tx.bytes") >= 3 * 98)
        // The VM without a NIC has none; nobody has I/O threads.
        let p = try #require(after.first { $0.name == "plain-vm" })
        #expect(p["net.count"] == .uint(0))
        #expect(p["iothread.count"] == .uint(0))
    }
}
