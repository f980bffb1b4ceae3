import Foundation
import Glibc
import VMPulseTestSupport

/// A TCP connection on loopback with blocking reads bounded by a timeout: the base of the
/// hand-made clients below, which do what no well-behaved library does (never read).
final class RawConnection {
    let fd: Int32

    /// Connects to 127.0.0.1:`port`; `receiveBuffer` shrinks the kernel's buffer (a client
    /// that does not read then pushes back sooner).
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestBedError("socket: \(String(cString: strerror(errno)))") }
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(fd); throw TestBedError("connect to \(port): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// Sends every byte, or returns false once the peer has closed (or the send would
    /// block longer than `SO_SNDTIMEO`, when set).
    @discardableResult func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// Reads exactly `count` bytes (throws when the peer closes or the timeout passes).
    func read(_ count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: count)
        while out.count < count {
            let n = recv(fd, &chunk, count - out.count, 0)
            guard n > 0 else { throw TestBedError("the peer closed or was silent after \(out.count) of \(count) bytes") }
            out += chunk[0..<n]
        }
        return out
    }

    /// Reads up to the end of an HTTP head.
    func readHead() throws -> String {
        var head: [UInt8] = []
        while !head.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)) {
            head += try read(1)
            guard head.count < 65_536 else { throw TestBedError("no end of the HTTP head") }
        }
        return String(decoding: head, as: UTF8.self)
    }

    /// Whether the peer has closed the connection (reading and dropping what it sent), within `timeout`.
    func closedByPeer(within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while ContinuousClock.now < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) >= 0 else { return false }
            if p.revents != 0 {
                let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return true }
            }
        }
        return false
    }
}

/// A WebSocket client by hand (RFC 6455): the upgrade, masked text frames out, and plain
/// frames in. For the hostile clients (one that never reads) and for bad upgrades.
enum RawWebSocket {
    /// Sends the upgrade request for `/rpc`; returns the status line's code.
    static func upgrade(_ c: RawConnection, token: String? = nil) throws -> Int {
        var request = "GET /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if let token { request += "Authorization: Bearer \(token)\r\n" }
        c.send(Array((request + "\r\n").utf8))
        let head = try c.readHead()
        guard let code = Int(head.dropFirst(9).prefix(3)) else { throw TestBedError("not an HTTP answer: \(head.prefix(100))") }
        return code
    }

    /// One masked text frame.
    static func frame(_ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        var out: [UInt8] = [0x81]
        if payload.count < 126 {
            out.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            out.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(payload.count) >> UInt64(shift)) & 0xFF)) }
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        out += mask
        for (i, byte) in payload.enumerated() { out.append(byte ^ mask[i % 4]) }
        return out
    }

    /// The next text message from the server (control frames are skipped).
    static func readText(_ c: RawConnection) throws -> String {
        while true {
            let head = try c.read(2)
            var length = UInt64(head[1] & 0x7F)
            if length == 126 { length = try c.read(2).reduce(0) { $0 << 8 | UInt64($1) } }
            if length == 127 { length = try c.read(8).reduce(0) { $0 << 8 | UInt64($1) } }
            guard length < 64 << 20 else { throw TestBedError("a frame of \(length) bytes") }
            let payload = try c.read(Int(length))
            if head[0] & 0x0F == 0x1 { return String(decoding: payload, as: UTF8.self) }
            if head[0] & 0x0F == 0x8 { throw TestBedError("the server closed the WebSocket") }
        }
    }
}

/// A VNC viewer by hand (RFB 3.8, no authentication), far enough that QEMU lists it as a
/// client of the display (`query-vnc`), and then kept open.
enum RawVNC {
    static func connect(display: Int) throws -> RawConnection {
        let c = try RawConnection(port: 5900 + display)
        let version = try c.read(12)
        guard version.starts(with: Array("RFB ".utf8)) else { throw TestBedError("not a VNC server") }
        c.send(Array("RFB 003.008\n".utf8))
        let count = try c.read(1)[0]
        let types = try c.read(Int(count))
        guard types.contains(1) else { throw TestBedError("the VNC server asks for authentication: \(types)") }
        c.send([1])  // security type None
        _ = try c.read(4)  // SecurityResult
        c.send([1])  // ClientInit, shared
        let header = try c.read(24)  // ServerInit: size, pixel format, name length
        let nameLength = header[20...23].reduce(0) { $0 << 8 | Int($1) }
        _ = try c.read(nameLength)
        return c
    }
}
