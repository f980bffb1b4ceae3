import Glibc

/// One agent per host: an exclusive `flock` on the data directory, held for the agent's
/// life. Two agents on one ledger would both account every VM, and bill it twice.
///
/// The lock is on the directory itself (opened read-only), so it needs no file of its
/// own and works on a read-only directory too. The kernel drops it when the process
/// ends, however it ends; the descriptor is close-on-exec, so a program the agent runs
/// (a thin-disk extender) cannot keep it. `billing export` only reads, and takes no lock.
public final class DataDirectoryLock: Sendable {
    public let directory: String
    private let descriptor: Int32

    /// Takes the lock, or throws naming the process that holds it.
    public init(directory: String) throws(AgentStartError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw AgentStartError("cannot open the data directory \(directory) to lock it: \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            let holder = Self.holder(of: fd)
            close(fd)
            guard reason == EWOULDBLOCK else {
                throw AgentStartError("cannot lock the data directory \(directory): \(String(cString: strerror(reason)))")
            }
            let who = holder.map { "(pid \($0))" } ?? "(its pid could not be found in /proc/locks)"
            throw AgentStartError("another vmpulse agent \(who) is running on the data directory \(directory); "
                                  + "one agent per host: stop it first, or give this one another data_dir")
        }
        self.directory = directory
        self.descriptor = fd
    }

    deinit { close(descriptor) }

    /// The pid holding a `flock` on the file `fd` is open on, from /proc/locks
    /// (`N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END`).
    static func holder(of fd: Int32) -> Int32? {
        var st = stat()
        guard fstat(fd, &st) == 0, let text = try? readText("/proc/locks") else { return nil }
        let inode = UInt64(st.st_ino)
        // The device as /proc/locks prints it: major and minor in hex (glibc's encoding of dev_t).
        let dev = UInt64(st.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 6, f[1] == "FLOCK", let pid = Int32(f[4]) else { continue }
            let parts = f[5].split(separator: ":")
            if parts.count == 3, UInt64(parts[2]) == inode, UInt64(parts[0], radix: 16) == major, UInt64(parts[1], radix: 16) == minor {
                return pid
            }
        }
        return nil
    }

    private static func readText(_ path: String) throws -> String {
        guard let file = fopen(path, "r") else { throw AgentStartError("cannot read \(path)") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 4 << 20 {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Why the agent cannot start.
public struct AgentStartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
