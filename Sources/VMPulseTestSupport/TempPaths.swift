import Foundation

/// Short, unique paths under /tmp (a unix socket path may hold at most 107 bytes).
public enum TempPaths {
    public static func socket(_ label: String = "peer") -> String {
        "/tmp/vmp-\(label)-\(UUID().uuidString.prefix(8).lowercased()).sock"
    }

    /// This process's resident set size in bytes, from /proc/self/statm.
    public static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// A lock for test helpers.
public final class NSLockShim: @unchecked Sendable {
    private let lock = NSLock()
    public init() {}
    public func run<T>(_ body: () -> T) -> T { lock.withLock(body) }
}
