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
    /// Disks, each a qcow2 image of this virtual size in MiB (virtio-blk, ids drive0, drive1...).
    public var disksMiB: [Int] = [256]
    /// Ask QEMU for `timed_stats` over these intervals (seconds), through `-drive stats-intervals`.
    public var statsIntervals: [Int] = []
    public var balloon = true
    /// A tap interface (host side) for a virtio-net NIC; nil: no NIC.
    public var tap: String?
    /// The workload the guest runs at boot (`wl=` on the kernel command line; see testbed/guest-init.sh).
    public var workload: String?
    /// Extra QEMU arguments.
    public var extraArguments: [String] = []

    public init(name: String) {
        self.name = name
    }
}
