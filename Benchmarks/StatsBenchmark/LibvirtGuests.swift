import Foundation
import VMPulseTestSupport

/// Transient libvirt domains shaped like the vmpulse test guests, started paused.
struct LibvirtGuests {
    let directory: String
    let count: Int

    var names: [String] { (1...count).map { "vmpbench-\($0)" } }

    func create() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        destroy()  // leftovers of an interrupted run
        for name in names {
            let disk = "\(directory)/\(name).qcow2"
            try TestBed.run(TestBed.qemuImg, ["create", "-q", "-f", "qcow2", disk, "256M"])
            let xml = """
                <domain type='qemu'>
                  <name>\(name)</name>
                  <memory unit='MiB'>128</memory>
                  <vcpu>1</vcpu>
                  <os><type arch='x86_64' machine='q35'>hvm</type></os>
                  <devices>
                    <emulator>\(TestBed.qemu)</emulator>
                    <disk type='file' device='disk'>
                      <driver name='qemu' type='qcow2'/>
                      <source file='\(disk)'/>
                      <target dev='vda' bus='virtio'/>
                    </disk>
                    <memballoon model='virtio'/>
                  </devices>
                </domain>
                """
            let file = "\(directory)/\(name).xml"
            try xml.write(toFile: file, atomically: true, encoding: .utf8)
            try TestBed.run("/usr/bin/virsh", ["-c", "qemu:///system", "create", file, "--paused"])
        }
    }

    func destroy() {
        for name in names {
            _ = try? Spawn.run("/usr/bin/virsh", ["-c", "qemu:///system", "destroy", name])
        }
    }
}
