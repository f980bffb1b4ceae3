/// What a test needs of a test bed, whichever runs the guests: QEMU directly (`TestBed`,
/// vmpulse reads each VM's monitor socket) or a private libvirtd (`LibvirtTestBed`, vmpulse
/// reads libvirt). One test body then runs on both: `@Test(arguments: TestBackend.allCases)`.
public protocol GuestBed: AnyObject, Sendable {
    /// The bed's own directory under /tmp (guests' disks, serial logs, shell sockets).
    var directory: String { get }
    /// Which backend vmpulse must use to read this bed's guests.
    var backend: TestBackend { get }
    /// The libvirt URI vmpulse must connect to (nil on the QMP backend).
    var libvirtURI: String? { get }
    /// Starts a guest and returns once QEMU runs (not once the guest has booted: see `Guest.waitReady`).
    @discardableResult func launch(_ spec: GuestSpec) throws -> Guest
    /// Stops every guest the bed started and removes its directory.
    func shutdown()
}

/// The two backends the end-to-end tests run on.
public enum TestBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case qmp
    case libvirt

    public var description: String { rawValue }

    /// A fresh test bed for this backend (libvirt: on the test process's shared private libvirtd).
    public func makeBed(prefix: String = "vmpulse") throws -> any GuestBed {
        switch self {
        case .qmp: try TestBed(prefix: prefix)
        case .libvirt: try LibvirtTestBed(daemon: LibvirtDaemon.shared(), prefix: prefix)
        }
    }
}

extension TestBed: GuestBed {
    public var backend: TestBackend { .qmp }
    public var libvirtURI: String? { nil }
}
