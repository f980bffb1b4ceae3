import Foundation
import Glibc

/// A unix-socket relay in front of libvirtd's socket, to make "libvirtd went away" (cut) and
/// "libvirtd hangs" (stall) happen to one connection without touching the shared daemon.
final class SocketRelay: @unchecked Sendable {
    // @unchecked: `fds`, `stalled` and `cutDone` are guarded by `lock`.
    let path: String
    private let target: String
    private let listener: Int32
    private let lock = NSLock()
    private var fds: [Int32] = []
    private var stalled = false
    private var cutDone = false

    init(target: String) throws {
        self.target = target
        path = "/tmp/vmp-relay-\(UUID().uuidString.prefix(8).lowercased()).sock"
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw RelayError("socket: \(String(cString: strerror(errno)))") }
        var address = try Self.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 8) == 0 else {
            close(listener)
            throw RelayError("bind/listen \(path): \(String(cString: strerror(errno)))")
        }
        Thread { [self] in acceptLoop() }.start()
    }

    /// Closes every relayed connection and the listener: the client sees EOF.
    func cut() {
        let open: [Int32] = lock.withLock {
            cutDone = true
            defer { fds = [] }
            return fds
        }
        for fd in open { shutdown(fd, Int32(SHUT_RDWR)) }
        shutdown(listener, Int32(SHUT_RDWR))
        unlink(path)
    }

    /// Stops passing bytes either way while keeping the sockets open: a hung daemon.
    func stall() { lock.withLock { stalled = true } }

    private var isStalled: Bool { lock.withLock { stalled } }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let server = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard server >= 0, var address = try? Self.address(target) else {
                close(client)
                continue
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            let keep: Bool = lock.withLock {
                guard !cutDone, connected == 0 else { return false }
                fds += [client, server]
                return true
            }
            guard keep else {
                close(client)
                close(server)
                continue
            }
            Thread { [self] in pump(from: client, to: server) }.start()
            Thread { [self] in pump(from: server, to: client) }.start()
        }
    }

    private func pump(from source: Int32, to sink: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = read(source, &buffer, buffer.count)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            while isStalled {
                // A hung daemon: hold the bytes until cut.
                if lock.withLock({ cutDone }) { return }
                usleep(50_000)
            }
            var sent = 0
            while sent < n {
                let m = buffer[sent..<n].withUnsafeBytes { write(sink, $0.baseAddress, $0.count) }
                if m < 0, errno == EINTR { continue }
                guard m > 0 else { return }
                sent += m
            }
        }
        shutdown(sink, Int32(SHUT_WR))
    }

    private static func address(_ path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw RelayError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return address
    }

    deinit {
        cut()
        close(listener)
        for fd in fds { close(fd) }
    }
}

struct RelayError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
