import Glibc

/// A listening TCP socket on 127.0.0.1 at a port the kernel picks, for the tests' scripted
/// peers (fake agents, taps, webhook receivers).
public enum LoopbackListener {
    /// The listening descriptor and its port.
    public static func open(backlog: Int32 = 16) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, backlog) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw TestBedError("cannot listen on 127.0.0.1: \(why)")
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }
}
