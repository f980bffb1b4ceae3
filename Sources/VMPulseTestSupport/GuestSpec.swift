import Foundation

/// The shape of one test guest.
public struct GuestSpec: Sendable {
    public var name: String
    public var uuid: String = UUID().uuidString.lowercased()
    public var memoryMiB: Int = 128
    public var vcpus: Int = 1
    public var maxVCPUs: Int?
    /// Start with the vCPUs stopped (`-S`) and no kernel: a cheap guest for scale runs.
    public var paused = false
    /// Disks (virtio-blk, drive ids drive0, drive1..., device ids disk0, disk1...).
    public var disks: [DiskSpec] = [DiskSpec()]
    /// Ask QEMU for `timed_stats` over these intervals (seconds), through `-drive stats-intervals`.
    public var statsIntervals: [Int] = []
    public var balloon = true
    /// A tap interface (host side) for a virtio-net NIC; nil: no NIC.
    public var tap: String?
    /// The workload the guest runs at boot (`wl=` on the kernel command line; see testbed/guest-init.sh).
    public var workload: String?
    /// A VNC display on 127.0.0.1 (port 5900 + the number); nil: none.
    public var vncDisplay: Int?
    /// The boot order in QEMU's letters (`cd`: disk, then CD-ROM); nil: QEMU's default.
    public var bootOrder: String?
    /// An image in a CD-ROM drive (SATA, read-only); nil: no CD-ROM.
    public var cdrom: String?
    /// A guest-agent port (virtio-serial `org.qemu.guest_agent.0`) whose host side is
    /// `Guest.agentSocket`, beside the monitor; the test guest runs qemu-ga on it.
    public var guestAgent = false
    /// A virtio NIC on QEMU's user-mode network (no host set-up; the guest gives it an address).
    public var userNetwork = false
    /// Extra QEMU arguments.
    public var extraArguments: [String] = []

    public init(name: String) {
        self.name = name
    }
}

/// One test disk.
public struct DiskSpec: Sendable {
    public var sizeMiB = 256
    /// `qcow2` or `raw`.
    public var format = "qcow2"
    /// An existing image to attach instead of creating one (a restarted VM keeps its disk).
    public var existingImage: String?
    /// The text of a blkdebug configuration: the image is attached through QEMU's
    /// error-injecting `blkdebug` driver.
    public var blkdebug: String?
    /// Extra `-drive` options, e.g. `werror=report,rerror=report`.
    public var driveOptions: String?

    public init(sizeMiB: Int = 256, format: String = "qcow2") {
        self.sizeMiB = sizeMiB
        self.format = format
    }
}
