import Foundation
internal import CLibvirt

/// libvirt's default event loop, set up once per process before the first connection opens.
///
/// libvirt delivers domain events and keepalive pings only through a registered event loop
/// implementation, and it must be registered before `virConnectOpen` (a connection opened
/// earlier never gets events or keepalive). `LibvirtConnection.open` calls `start()` first,
/// so callers need do nothing. One dedicated thread then runs `virEventRunDefaultImpl` for
/// the life of the process; the callbacks of every connection run on it.
enum EventLoop {
    /// nil when set up; otherwise why it failed (then every open throws it).
    private static let setup: LibvirtError? = {
        // Errors stay in virGetLastError for us to read; without a handler libvirt also prints them.
        virSetErrorFunc(nil) { _, _ in }
        guard virEventRegisterDefaultImpl() == 0 else {
            return LibvirtError.last("cannot register libvirt's default event loop (virEventRegisterDefaultImpl)")
        }
        let thread = Thread {
            while true {
                if virEventRunDefaultImpl() != 0 {
                    // Only fails on a broken poll(); do not spin.
                    virResetLastError()
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }
        }
        thread.name = "libvirt-events"
        thread.start()
        return nil
    }()

    static func start() throws(LibvirtError) {
        if let setup { throw setup }
    }
}
