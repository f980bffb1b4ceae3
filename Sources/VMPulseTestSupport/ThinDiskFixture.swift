import Foundation
import Glibc

/// A qcow2 image on a loop device over a sparse file: the test bed's thin disk
/// (a stand-in for a qcow2 on an LVM volume, which this sandbox cannot make).
public final class ThinDiskFixture: @unchecked Sendable {
    // @unchecked: immutable after init.
    public let file: String
    public let device: String

    /// - Parameters:
    ///   - physicalMiB: the loop device's starting size.
    ///   - capacityMiB: the qcow2 image's virtual size (what the guest sees).
    public init(directory: String, physicalMiB: Int, capacityMiB: Int) throws {
        file = directory + "/thin-\(UUID().uuidString.prefix(6)).img"
        guard FileManager.default.createFile(atPath: file, contents: nil) else { throw TestBedError("cannot create \(file)") }
        guard truncate(file, off_t(physicalMiB) << 20) == 0 else { throw TestBedError("cannot size \(file)") }
        let out = try Spawn.capture("/sbin/losetup", ["-f", "--show", file])
        guard out.status == 0, out.stdout.hasPrefix("/dev/loop") else { throw TestBedError("losetup failed: \(out.stderr)") }
        device = out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try TestBed.run(TestBed.qemuImg, ["create", "-q", "-f", "qcow2", device, "\(capacityMiB)M"])
    }

    /// QEMU options that attach it as libvirt and oVirt do: a host_device protocol node
    /// (`proto0`) under a qcow2 format node, on a virtio-blk disk that pauses on ENOSPC.
    public var qemuArguments: [String] { Self.qemuArguments(device: device) }

    public static func qemuArguments(device: String) -> [String] {
        [
            "-blockdev", "driver=host_device,filename=\(device),node-name=proto0,cache.direct=on",
            "-blockdev", "driver=qcow2,file=proto0,node-name=fmt0",
            "-device", "virtio-blk-pci,drive=fmt0,id=disk0,werror=enospc,rerror=report",
        ]
    }

    /// Detaches the loop devices over the fixtures' files in `directory` (for `vmpulse-testbed down`).
    public static func detachAll(in directory: String) -> Int {
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix("thin-") && $0.hasSuffix(".img") }
        var detached = 0
        for file in files {
            let out = try? Spawn.capture("/sbin/losetup", ["-j", directory + "/" + file])
            for line in (out?.stdout ?? "").split(separator: "\n") {
                guard let device = line.split(separator: ":").first else { continue }
                if (try? Spawn.run("/sbin/losetup", ["-d", String(device)])) == 0 { detached += 1 }
            }
        }
        return detached
    }

    /// A guest whose only disk is this one.
    public func guest(named name: String, paused: Bool = false) -> GuestSpec {
        var spec = GuestSpec(name: name)
        spec.paused = paused
        spec.disks = []
        spec.extraArguments = qemuArguments
        return spec
    }

    /// The loop device's size now, in bytes (0 when it cannot be read).
    public var sizeBytes: UInt64 {
        let out = try? Spawn.capture("/sbin/blockdev", ["--getsize64", device])
        return UInt64(out?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
    }

    public func detach() {
        _ = try? Spawn.run("/sbin/losetup", ["-d", device])
        try? FileManager.default.removeItem(atPath: file)
    }
}
