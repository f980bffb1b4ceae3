import Foundation
import Libvirt
import VMPulseTestSupport

/// Real transient TCG domains for the binding tests, each with a qcow2 disk of its own.
enum LibvirtFixture {
    /// The libvirtd the tests talk to: the test process's private daemon (libvirt-bed's
    /// `LibvirtDaemon.shared()`), or $VMPULSE_LIBVIRT_URI when set.
    static func uri() throws -> String {
        if let uri = ProcessInfo.processInfo.environment["VMPULSE_LIBVIRT_URI"] { return uri }
        return try LibvirtDaemon.shared().uri
    }

    /// The unix socket of that libvirtd (the URI's `socket=`, or the system daemon's).
    static func socketPath() throws -> String {
        let uri = try uri()
        if let query = URLComponents(string: uri)?.queryItems, let socket = query.first(where: { $0.name == "socket" })?.value {
            return socket
        }
        return "/var/run/libvirt/libvirt-sock"
    }

    /// The tests' URI, but through `socket` (a relay in front of the daemon's socket).
    static func uri(through socket: String) throws -> String {
        let base = try uri()
        guard var parts = URLComponents(string: base) else { throw TestBedError("cannot parse libvirt URI \(base)") }
        if parts.scheme == "qemu" { parts.scheme = "qemu+unix" }
        parts.queryItems = (parts.queryItems ?? []).filter { $0.name != "socket" } + [URLQueryItem(name: "socket", value: socket)]
        guard let relayed = parts.string else { throw TestBedError("cannot build a relayed URI from \(base)") }
        return relayed
    }

    static func open() throws -> LibvirtConnection {
        let uri = try uri()
        do {
            return try LibvirtConnection.open(uri: uri)
        } catch {
            throw TestBedError("\(error) (the tests start a private libvirtd with scripts/libvirtd.sh; or set VMPULSE_LIBVIRT_URI)")
        }
    }

    /// A directory of its own under /tmp for one test's disks.
    static func directory(_ label: String) throws -> String {
        let dir = "/tmp/vmp-lv-\(label)-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Starts a paused transient domain named `name` with a 64 MiB qcow2 disk `vda` (no kernel).
    static func startDomain(_ conn: LibvirtConnection, name: String, in directory: String) throws -> LibvirtDomainInfo {
        let disk = "\(directory)/\(name).qcow2"
        try TestBed.run(TestBed.qemuImg, ["create", "-q", "-f", "qcow2", disk, "64M"])
        let xml = domainXML(name: name, disk: "<source file='\(disk)'/>", diskType: "file", boot: "")
        return try conn.createTransient(xml: xml, paused: true)
    }

    /// Starts, paused, a domain booting the test guest (kernel and initrd of `make setup`) with
    /// `workload` (see testbed/guest-init.sh), its disk `vda` the thin disk's loop device, which
    /// pauses the guest on ENOSPC (`error_policy='enospace'`).
    static func startGuest(_ conn: LibvirtConnection, name: String, thin: ThinDiskFixture, workload: String) throws -> LibvirtDomainInfo {
        let images = try imageDirectory()
        let boot = """
            <kernel>\(images)/vmlinuz</kernel>
            <initrd>\(images)/initrd.img</initrd>
            <cmdline>console=ttyS0 quiet panic=-1 wl=\(workload)</cmdline>
            """
        let xml = domainXML(name: name, disk: "<source dev='\(thin.device)'/>", diskType: "block", boot: boot)
        return try conn.createTransient(xml: xml, paused: true)
    }

    static func domainXML(name: String, disk: String, diskType: String, boot: String) -> String {
        """
        <domain type='qemu'>
          <name>\(name)</name>
          <memory unit='MiB'>128</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64' machine='q35'>hvm</type>\(boot)</os>
          <on_crash>destroy</on_crash>
          <devices>
            <emulator>\(TestBed.qemu)</emulator>
            <disk type='\(diskType)' device='disk'>
              <driver name='qemu' type='qcow2' cache='none' error_policy='enospace'/>
              \(disk)
              <target dev='vda' bus='virtio'/>
            </disk>
            <memballoon model='virtio'/>
          </devices>
        </domain>
        """
    }

    /// Where `make setup` put the test guest's kernel and initrd.
    static func imageDirectory() throws -> String {
        if let dir = ProcessInfo.processInfo.environment["VMPULSE_TESTBED_DIR"] { return dir }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent(".testbed").path
        guard FileManager.default.fileExists(atPath: dir + "/vmlinuz") else {
            throw TestBedError("the test guest is not built (\(dir)/vmlinuz is missing): run 'make setup'")
        }
        return dir
    }

    /// Destroys the domain if it still runs, and removes the directory.
    static func cleanUp(_ conn: LibvirtConnection, _ uuids: [String], _ directory: String) {
        for uuid in uuids { _ = try? conn.destroy(uuid: uuid) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A name unique to this run.
    static func name(_ label: String) -> String {
        "vmp-lv-\(label)-\(UUID().uuidString.prefix(6).lowercased())"
    }
}

struct TimedOut: Error, CustomStringConvertible {
    var description: String
}

/// The first event of `stream` that `matches`, or TimedOut after `limit`.
func firstEvent(
    _ stream: AsyncStream<LibvirtEvent>, within limit: Duration, _ what: String,
    matching matches: @escaping @Sendable (LibvirtEvent) -> Bool
) async throws -> LibvirtEvent {
    try await withThrowingTaskGroup(of: LibvirtEvent?.self) { group in
        group.addTask {
            for await event in stream where matches(event) { return event }
            return nil
        }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimedOut(description: "no \(what) within \(limit)")
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let event = first else {
            throw TimedOut(description: "the event stream ended before \(what)")
        }
        return event
    }
}

extension LibvirtDomainStats {
    func uint(_ key: String) -> UInt64? {
        if case .uint(let v)? = self[key] { return v }
        return nil
    }

    func int(_ key: String) -> Int64? {
        switch self[key] {
        case .int(let v)?: return v
        case .uint(let v)?: return Int64(exactly: v)
        default: return nil
        }
    }

    func string(_ key: String) -> String? {
        if case .string(let v)? = self[key] { return v }
        return nil
    }
}
