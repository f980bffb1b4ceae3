import Foundation
import Glibc
import Testing
import VMPulseTestSupport

/// The libvirt test bed: real test guests as transient domains of a private libvirtd.
@Suite(.serialized) struct LibvirtTestBedTests {
    /// The domain's state as `virsh domstate` says it ("running", "paused"...), nil when there is no such domain.
    func state(_ daemon: LibvirtDaemon, _ name: String) -> String? {
        (try? daemon.virsh(["domstate", name]))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func domainNames(_ daemon: LibvirtDaemon) throws -> [String] {
        try daemon.virsh(["list", "--all", "--name"]).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    func name(_ label: String) -> String {
        "lvbed-\(label)-\(UUID().uuidString.prefix(6).lowercased())"
    }

    @Test func aBootedGuestAnswersOnItsSerialShell() async throws {
        let daemon = try LibvirtDaemon.shared()
        let bed = try LibvirtTestBed(daemon: daemon, prefix: "lvbed")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: name("boot"))
        spec.vcpus = 1
        spec.maxVCPUs = 2
        spec.memoryMiB = 160
        spec.disks = [DiskSpec(sizeMiB: 64, format: "qcow2"), DiskSpec(sizeMiB: 32, format: "raw")]
        let tap = "vmpl\(String(UInt32.random(in: 0...0xFFFFFF), radix: 16))"
        spec.tap = tap
        let guest = try bed.launch(spec)
        try await guest.waitReady()
        #expect(guest.isRunning)
        let subnet = Int.random(in: 10...250)
        try TestBed.run("/sbin/ip", ["addr", "add", "10.214.\(subnet).1/24", "dev", tap])

        let shell = try await guest.shell()
        #expect(try await shell.check("echo hello from libvirt") == "hello from libvirt")
        // Both disks, vda and vdb, with the sizes asked for (in 512-byte sectors).
        #expect(try await shell.check("cat /sys/block/vda/size") == "131072")
        #expect(try await shell.check("cat /sys/block/vdb/size") == "65536")
        #expect(try await shell.check("grep -c ^processor /proc/cpuinfo") == "1")
        // The NIC is on the tap: the guest reaches the host through it.
        try await shell.check("ip link set eth0 up && ip addr add 10.214.\(subnet).2/24 dev eth0 && ping -c 2 -W 2 10.214.\(subnet).1")
        await shell.close()

        // The domain is the spec's: its UUID, its vCPUs, its memory; QEMU's pid is the guest's.
        #expect(try daemon.virsh(["domuuid", spec.name]).trimmingCharacters(in: .whitespacesAndNewlines) == spec.uuid)
        #expect(try daemon.virsh(["vcpucount", spec.name, "--maximum", "--live"]).trimmingCharacters(in: .whitespacesAndNewlines) == "2")
        #expect(try daemon.virsh(["dommemstat", spec.name]).contains("actual 163840"))
        let cmdline = try Spawn.capture("/bin/ps", ["-o", "args=", "-p", "\(guest.pid)"]).stdout
        #expect(cmdline.contains("guest=\(spec.name)"))
        // The private daemon keeps its state in its own directory, not the host's /run/libvirt.
        #expect(FileManager.default.fileExists(atPath: "\(daemon.directory)/run/libvirt/qemu/\(spec.name).pid"))
        #expect(!FileManager.default.fileExists(atPath: "/run/libvirt/qemu/\(spec.name).pid"))

        // The tap libvirt made goes with the domain.
        bed.shutdown()
        #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)"))
    }

    @Test func aPausedGuestIsListedPaused() throws {
        let daemon = try LibvirtDaemon.shared()
        let bed = try LibvirtTestBed(daemon: daemon, prefix: "lvbed")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: name("paused"))
        spec.paused = true
        let guest = try bed.launch(spec)
        #expect(guest.isRunning)
        #expect(state(daemon, spec.name) == "paused")
        #expect(try daemon.virsh(["list", "--state-paused", "--name"]).contains(spec.name))
        #expect(guest.libvirtURI == daemon.uri)
    }

    @Test func libvirtdRestartsWithItsGuestRunning() async throws {
        // A daemon of this test's own: the shared one must not go away under other tests.
        let dir = "/tmp/vmp-lvd-\(UUID().uuidString.prefix(6).lowercased())"
        let daemon = try LibvirtDaemon.start(directory: dir)
        defer {
            try? daemon.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        let bed = try LibvirtTestBed(daemon: daemon, prefix: "lvbed")
        defer { bed.shutdown() }
        let guest = try bed.launch(GuestSpec(name: name("restart")))
        try await guest.waitReady()
        let pid = guest.pid

        try daemon.stop(keepGuests: true)
        #expect(!daemon.isListening)
        #expect(throws: (any Error).self) { try daemon.virsh(["list"]) }
        #expect(guest.isRunning)
        let shell = try await guest.shell()
        #expect(try await shell.check("echo still here") == "still here")

        try daemon.start()
        #expect(daemon.isListening)
        #expect(state(daemon, guest.name) == "running")
        // libvirt took the monitor back: it can pause and resume the same QEMU.
        try daemon.virsh(["suspend", guest.name])
        #expect(state(daemon, guest.name) == "paused")
        try daemon.virsh(["resume", guest.name])
        #expect(state(daemon, guest.name) == "running")
        #expect(guest.pid == pid && guest.isRunning)
        #expect(try await shell.check("echo after restart") == "after restart")
        await shell.close()

        // A full stop takes the QEMUs with it.
        try daemon.stop()
        #expect(!guest.isRunning)
        #expect(!daemon.isListening)
    }

    @Test func shutdownLeavesNoQEMUAndNoDomain() async throws {
        let daemon = try LibvirtDaemon.shared()
        let bed = try LibvirtTestBed(daemon: daemon, prefix: "lvbed")
        var paused = GuestSpec(name: name("gone-p"))
        paused.paused = true
        let a = try bed.launch(paused)
        let b = try bed.launch(GuestSpec(name: name("gone-b")))
        var killed = GuestSpec(name: name("gone-k"))
        killed.paused = true
        let c = try bed.launch(killed)
        c.signal(SIGKILL)  // QEMU dies behind libvirt's back
        try await b.waitReady()
        #expect(try Set(domainNames(daemon)).isSuperset(of: [a.name, b.name]))

        bed.shutdown()
        for guest in [a, b, c] {
            #expect(!guest.isRunning, "QEMU of \(guest.name) still runs")
        }
        let left = try domainNames(daemon)
        #expect(!left.contains(a.name) && !left.contains(b.name) && !left.contains(c.name), "domains left: \(left)")
        #expect(!FileManager.default.fileExists(atPath: bed.directory))
    }

    @Test(arguments: TestBackend.allCases)
    func eitherBackendLaunchesTheSameSpec(_ backend: TestBackend) throws {
        let bed = try backend.makeBed(prefix: "lvbed")
        var spec = GuestSpec(name: name("matrix"))
        spec.paused = true
        let guest = try bed.launch(spec)
        #expect(guest.isRunning)
        #expect(bed.backend == backend)
        #expect((bed.libvirtURI != nil) == (backend == .libvirt))
        bed.shutdown()
        #expect(!guest.isRunning)
    }

    @Test func whatLibvirtCannotExpressIsRefusedClearly() throws {
        let bed = try LibvirtTestBed(daemon: LibvirtDaemon.shared(), prefix: "lvbed")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: name("blkdebug"))
        spec.paused = true
        spec.disks[0].blkdebug = "[inject-error]\nevent = \"write_aio\"\n"
        let error = #expect(throws: TestBedError.self) { try bed.launch(spec) }
        #expect(error?.message.contains("blkdebug") == true)

        var options = GuestSpec(name: name("options"))
        options.paused = true
        options.disks[0].driveOptions = "werror=report,bogus=1"
        let optionError = #expect(throws: TestBedError.self) { try bed.launch(options) }
        #expect(optionError?.message.contains("bogus=1") == true)
    }
}

/// A thin disk (ThinDiskFixture) becomes a libvirt block disk, not a QEMU pass-through.
@Suite(.serialized) struct LibvirtTestBedThinDiskTests {
    @Test func aThinDiskIsALibvirtBlockDiskThatPausesOnENOSPC() throws {
        let daemon = try LibvirtDaemon.shared()
        let bed = try LibvirtTestBed(daemon: daemon, prefix: "lvbed")
        defer { bed.shutdown() }
        let thin = try ThinDiskFixture(directory: bed.directory, physicalMiB: 16, capacityMiB: 64)
        defer { thin.detach() }
        let guest = try bed.launch(thin.guest(named: "lvbed-thin-\(UUID().uuidString.prefix(6).lowercased())", paused: true))
        let xml = try daemon.virsh(["dumpxml", guest.name])
        #expect(xml.contains("<source dev='\(thin.device)'"))
        #expect(xml.contains("error_policy='enospace'"))
        #expect(xml.contains("<target dev='vda' bus='virtio'/>"))
        #expect(!xml.contains("qemu:commandline"))
    }
}
