import Glibc

/// The directory of monitor sockets, one per VM (`NAME.sock`), and of the VMs'
/// guest-agent sockets (`NAME.qga`).
enum SocketDirectory {
    /// The unix sockets in `path`, as full paths, sorted.
    static func scan(_ path: String) throws(BackendError) -> [String] {
        guard let dir = opendir(path) else {
            let reason = String(cString: strerror(errno))
            throw BackendError(
                "cannot read the socket directory \(path): \(reason). Start each QEMU with "
                    + "-qmp unix:\(path)/NAME.sock,server=on,wait=off, or pass --socket-dir")
        }
        defer { closedir(dir) }
        var sockets: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            // NAME.qga is the host side of NAME's guest-agent port, not a monitor (QMPGuestAgent).
            guard name != ".", name != "..", !name.hasSuffix(".qga") else { continue }
            let full = path.hasSuffix("/") ? path + name : path + "/" + name
            var st = stat()
            guard stat(full, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { continue }
            sockets.append(full)
        }
        return sockets.sorted()
    }

    /// Which file a socket path is: a QEMU that starts again binds a new socket (a new
    /// inode), so a socket nothing listened on is tried again only once it was replaced.
    struct Stamp: Equatable, Sendable {
        var device: UInt64
        var inode: UInt64
        var changed: Int
    }

    static func stamp(_ path: String) -> Stamp? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Stamp(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), changed: Int(st.st_ctim.tv_sec) &* 1_000_000_000 &+ Int(st.st_ctim.tv_nsec))
    }

    /// The VM name a socket stands for when QEMU was started without `-name`: the file name without `.sock` or `.qmp`.
    static func vmName(forSocket path: String) -> String {
        var name = path.split(separator: "/").last.map(String.init) ?? path
        for suffix in [".sock", ".qmp"] where name.hasSuffix(suffix) {
            name.removeLast(suffix.count)
        }
        return name
    }
}
