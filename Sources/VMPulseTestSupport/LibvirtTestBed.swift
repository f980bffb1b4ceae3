import Foundation

/// The test bed's libvirt twin: the same guests (kernel, initrd, disks, balloon, NIC, serial
/// console and command shell) as transient TCG domains of a private libvirtd (`LibvirtDaemon`).
///
/// Differences from `TestBed`, by nature: a guest has no vmpulse monitor socket (libvirt owns the
/// monitor; `Guest.socketPath` is empty) and no control monitor (use `Guest.monitorCommand`, which
/// goes through libvirt); its domain is named `spec.name`, unique within the daemon. A thin disk
/// given as `ThinDiskFixture`'s QEMU arguments becomes a libvirt block disk (`error_policy='enospace'`).
/// `DiskSpec.blkdebug` and `GuestSpec.statsIntervals` have no libvirt equivalent and are refused.
public final class LibvirtTestBed: GuestBed, @unchecked Sendable {
    // @unchecked: `guests` is guarded by `lock`.
    public let daemon: LibvirtDaemon
    public let directory: String
    public let imageDirectory: String
    private let lock = NSLock()
    private var guests: [Guest] = []

    public var backend: TestBackend { .libvirt }
    public var libvirtURI: String? { daemon.uri }
    public var uri: String { daemon.uri }

    public convenience init(daemon: LibvirtDaemon, prefix: String = "vmpulse") throws {
        try self.init(daemon: daemon, directory: "/tmp/\(prefix)-\(UUID().uuidString.prefix(8).lowercased())")
    }

    public init(daemon: LibvirtDaemon, directory: String) throws {
        imageDirectory = try TestBed.findImages()
        for tool in [TestBed.qemu, TestBed.qemuImg, "/usr/bin/virsh"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw TestBedError("\(tool) is missing: run 'make setup'")
        }
        self.daemon = daemon
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Starts the guest as a transient domain (`virsh create`, `--paused` for a paused spec) and
    /// returns once its QEMU runs.
    @discardableResult
    public func launch(_ spec: GuestSpec) throws -> Guest {
        if spec.disks.contains(where: { $0.blkdebug != nil }) {
            throw TestBedError("\(spec.name): libvirt cannot attach a disk through QEMU's blkdebug driver; run this test on the qmp backend")
        }
        if !spec.statsIntervals.isEmpty {
            throw TestBedError("\(spec.name): libvirt has no -drive stats-intervals (timed_stats); run this test on the qmp backend")
        }
        let guestDir = directory + "/" + spec.name
        let disks = try TestBed.makeDisks(spec, in: guestDir)
        let guest = Guest(
            spec: spec, directory: guestDir, socketPath: "", disks: disks,
            pidFile: "\(daemon.directory)/run/libvirt/qemu/\(spec.name).pid", libvirtURI: daemon.uri)
        let xml = try LibvirtDomainXML.domain(for: spec, guest: guest, images: imageDirectory)
        let file = guestDir + "/domain.xml"
        try xml.write(toFile: file, atomically: true, encoding: .utf8)
        do {
            try daemon.virsh(["create", file] + (spec.paused ? ["--paused"] : []))
        } catch {
            throw TestBedError("cannot start \(spec.name) under libvirt: \(error) (QEMU's log: \(daemon.directory)/log/qemu/\(spec.name).log)")
        }
        lock.withLock { guests.append(guest) }
        try guest.readPID()
        if let tap = spec.tap { try TestBed.run("/sbin/ip", ["link", "set", tap, "up"]) }
        return guest
    }

    /// Destroys every domain this bed started and removes its directory.
    public func shutdown() {
        let all = lock.withLock { guests }
        for guest in all { guest.stop() }
        for guest in all where (try? daemon.virsh(["domstate", guest.name])) != nil {
            // QEMU was killed behind libvirt's back and libvirt has not noticed yet: make it forget the domain.
            _ = try? daemon.virsh(["destroy", guest.name])
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension Guest {
    /// Sends a QMP command to a libvirt guest's QEMU through libvirt (`virsh qemu-monitor-command`;
    /// libvirt then marks the domain tainted "custom-monitor") and returns QEMU's JSON reply.
    public func monitorCommand(_ json: String) throws -> String {
        guard let libvirtURI else { throw TestBedError("\(name) is not a libvirt guest: use its controlSocket") }
        let out = try Spawn.capture("/usr/bin/timeout", ["60", "/usr/bin/virsh", "-q", "-c", libvirtURI, "qemu-monitor-command", name, json])
        guard out.status == 0 else { throw TestBedError("qemu-monitor-command \(json) on \(name) failed (\(out.status)): \(out.stderr)") }
        return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The domain XML of a test guest: QEMUCommandLine's guest, said to libvirt.
enum LibvirtDomainXML {
    static func domain(for spec: GuestSpec, guest: Guest, images: String) throws -> String {
        var (extra, thinDevice) = (spec.extraArguments, String?.none)
        if let device = thinDiskDevice(in: extra) {
            (extra, thinDevice) = ([], device)
        }
        var devices = ["<emulator>\(escape(TestBed.qemu))</emulator>"]
        for (i, path) in guest.disks.enumerated() {
            devices.append(try disk(path: path, format: spec.disks[i].format, options: spec.disks[i].driveOptions, index: i))
        }
        if let thinDevice {
            devices.append(try disk(path: thinDevice, format: "qcow2", options: "cache=none,werror=enospc,rerror=report", index: guest.disks.count))
        }
        devices.append("<controller type='usb' model='none'/>")
        if let image = spec.cdrom {
            devices.append("<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='\(escape(image))'/><target dev='sda' bus='sata'/><readonly/></disk>")
        }
        if let display = spec.vncDisplay {
            devices.append("<graphics type='vnc' port='\(5900 + display)' autoport='no' listen='127.0.0.1'/>")
        }
        var os = "<type arch='x86_64' machine='q35'>hvm</type>"
        let bootDevices = ["c": "hd", "d": "cdrom", "n": "network", "a": "fd"]
        for letter in spec.bootOrder ?? "" { if let dev = bootDevices[String(letter)] { os += "<boot dev='\(dev)'/>" } }
        if !spec.paused {
            var append = "console=ttyS0 quiet panic=-1"
            if let workload = spec.workload { append += " wl=\(workload)" }
            os += "<kernel>\(escape(images))/vmlinuz</kernel><initrd>\(escape(images))/initrd.img</initrd><cmdline>\(escape(append))</cmdline>"
            devices.append("""
                <serial type='file'><source path='\(escape(guest.serialLog))'/><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>
                """)
            devices.append("""
                <serial type='unix'><source mode='bind' path='\(escape(guest.shellSocket))'/><target type='isa-serial' port='1'><model name='isa-serial'/></target></serial>
                """)
        }
        devices.append(spec.balloon ? "<memballoon model='virtio'/>" : "<memballoon model='none'/>")
        if let tap = spec.tap {
            // Like QEMU's -netdev tap: an existing tap is used as it is (managed='no'); a missing one
            // is made by libvirt and goes with the domain.
            let exists = FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)")
            let managed = exists ? " managed='no'" : ""
            devices.append("<interface type='ethernet'><target dev='\(escape(tap))'\(managed)/><model type='virtio'/><rom enabled='no'/></interface>")
        }
        if spec.guestAgent {
            // libvirt makes and owns the socket; it talks to qemu-ga itself.
            devices.append("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>")
        }
        if spec.userNetwork {
            devices.append("<interface type='user'><model type='virtio'/><rom enabled='no'/></interface>")
        }
        let maxVCPUs = spec.maxVCPUs ?? spec.vcpus
        guard spec.vcpus > 0, maxVCPUs >= spec.vcpus, spec.memoryMiB > 0 else {
            throw TestBedError("\(spec.name): bad shape (vcpus \(spec.vcpus), maxVCPUs \(maxVCPUs), memory \(spec.memoryMiB) MiB)")
        }
        let commandLine = extra.isEmpty ? "" : "<qemu:commandline>"
            + extra.map { "<qemu:arg value='\(escape($0))'/>" }.joined() + "</qemu:commandline>"
        let namespace = extra.isEmpty ? "" : " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"
        return """
            <domain type='qemu'\(namespace)>
              <name>\(escape(spec.name))</name>
              <uuid>\(escape(spec.uuid))</uuid>
              <memory unit='MiB'>\(spec.memoryMiB)</memory>
              <currentMemory unit='MiB'>\(spec.memoryMiB)</currentMemory>
              <vcpu placement='static' current='\(spec.vcpus)'>\(maxVCPUs)</vcpu>
              <os>\(os)</os>
              <features><acpi/><apic/></features>
              <clock offset='utc'/>
              <on_poweroff>destroy</on_poweroff>
              <on_crash>destroy</on_crash>
              <devices>
                \(devices.joined(separator: "\n    "))
              </devices>
              \(commandLine)
            </domain>
            """
    }

    /// A virtio disk `vdX`; a path under /dev is a block device (a thin disk's loop device).
    static func disk(path: String, format: String, options: String?, index: Int) throws -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        guard index < letters.count else { throw TestBedError("more than \(letters.count) disks") }
        guard format == "qcow2" || format == "raw" else { throw TestBedError("disk format \(format): qcow2 or raw") }
        let driver = try driverAttributes(options)
        let (type, source) = path.hasPrefix("/dev/") ? ("block", "dev") : ("file", "file")
        return "<disk type='\(type)' device='disk'><driver name='qemu' type='\(format)'\(driver)/>"
            + "<source \(source)='\(escape(path))'/><target dev='vd\(letters[index])' bus='virtio'/></disk>"
    }

    /// DiskSpec.driveOptions (`-drive` options) as libvirt `<driver>` attributes.
    static func driverAttributes(_ options: String?) throws -> String {
        guard let options, !options.isEmpty else { return "" }
        let policies = ["stop": "stop", "report": "report", "ignore": "ignore", "enospc": "enospace"]
        var attributes = ""
        for option in options.split(separator: ",") {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw TestBedError("drive option '\(option)' has no libvirt equivalent here") }
            let (key, value) = (parts[0], parts[1])
            if key == "werror", let policy = policies[value] {
                attributes += " error_policy='\(policy)'"
            } else if key == "rerror", value != "enospc", let policy = policies[value] {
                attributes += " rerror_policy='\(policy)'"
            } else if key == "cache", ["none", "writeback", "writethrough", "directsync", "unsafe"].contains(value) {
                attributes += " cache='\(value)'"
            } else if key == "aio", ["native", "threads", "io_uring"].contains(value) {
                attributes += " io='\(value)'"
            } else if key == "discard", ["unmap", "ignore"].contains(value) {
                attributes += " discard='\(value)'"
            } else {
                throw TestBedError("drive option '\(option)' has no libvirt equivalent in LibvirtTestBed")
            }
        }
        return attributes
    }

    /// The loop device when `arguments` are exactly ThinDiskFixture's QEMU arguments.
    static func thinDiskDevice(in arguments: [String]) -> String? {
        guard arguments.count > 1, arguments[0] == "-blockdev" else { return nil }
        let prefix = "driver=host_device,filename="
        guard arguments[1].hasPrefix(prefix), let device = arguments[1].dropFirst(prefix.count).split(separator: ",").first else { return nil }
        return ThinDiskFixture.qemuArguments(device: String(device)) == arguments ? String(device) : nil
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "'": out += "&apos;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
