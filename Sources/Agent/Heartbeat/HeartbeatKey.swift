import Crypto
import Glibc

/// The key both ends of a heartbeat link share (`heartbeat.key_file`): the file's bytes as
/// they are, less one trailing newline, so that `head -c 32 /dev/urandom` and
/// `openssl rand -hex 32` both make one. At least 32 bytes (HMAC-SHA256's own size), and
/// readable by its owner only.
public enum HeartbeatKey {
    public static let minBytes = 32
    public static let maxBytes = 4096

    public static func load(path: String) throws(ConfigError) -> PulseKey {
        let k = "heartbeat.key_file"
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw ConfigError(key: k, message: "\(path): \(String(cString: strerror(errno))) (make one with: head -c 32 /dev/urandom > \(path); chmod 600 \(path))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ConfigError(key: k, message: "\(path) is not a regular file") }
        guard st.st_mode & 0o077 == 0 else {
            throw ConfigError(key: k, message: "\(path) can be read by others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 \(path)")
        }
        guard st.st_size <= maxBytes + 1 else { throw ConfigError(key: k, message: "\(path) has \(st.st_size) bytes; a key has at most \(maxBytes)") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ConfigError(key: k, message: "\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: maxBytes + 2)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw ConfigError(key: k, message: "\(path): \(String(cString: strerror(errno)))") }
        var key = Array(bytes[0..<n])
        if key.last == 0x0A { key.removeLast() }
        guard key.count >= minBytes else {
            throw ConfigError(key: k, message: "\(path) holds \(key.count) bytes; a key needs at least \(minBytes) (head -c 32 /dev/urandom > \(path))")
        }
        guard key.count <= maxBytes else { throw ConfigError(key: k, message: "\(path) has more than \(maxBytes) bytes") }
        return PulseKey(bytes: key)
    }
}

/// The shared key's bytes (swift-crypto's `SymmetricKey` is not `Sendable`: one is made
/// from these for each frame, 32 bytes copied).
public struct PulseKey: Sendable, Equatable {
    public let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    var symmetric: SymmetricKey { SymmetricKey(data: bytes) }
}
