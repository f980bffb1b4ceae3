import Glibc
import Synchronization
import VMPulseCore

/// Reads small files under /proc and /sys.
///
/// Hand-written with read(2) because these files report a size of 0 to stat,
/// and a stats pass reads dozens of them; one syscall each keeps it cheap.
enum ProcFS {
    /// The file's text (at most `limit` bytes), or nil when it cannot be read (the process or thread is gone).
    /// Reads into a small buffer that grows only for long files such as a QEMU command line.
    static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        readBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The file's bytes (at most `limit`), or nil when it cannot be read.
    static func readBytes(_ path: String, limit: Int = 1 << 20) -> ArraySlice<UInt8>? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: min(4096, limit))
        var total = 0
        while total < limit {
            if total == bytes.count { bytes += [UInt8](repeating: 0, count: min(bytes.count, limit - total)) }
            let n = bytes.withUnsafeMutableBytes { buf -> Int in
                guard let base = buf.baseAddress else { return -1 }
                return Glibc.read(fd, base + total, buf.count - total)
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            total += n
        }
        return bytes[0..<total]
    }

    static let clockTicksPerSecond: UInt64 = {
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        return ticks > 0 ? UInt64(ticks) : 100
    }()

    static let pageSize: UInt64 = {
        let size = sysconf(Int32(_SC_PAGESIZE))
        return size > 0 ? UInt64(size) : 4096
    }()

    /// `/proc/PID/stat` parsed, or nil if the process is gone; a parse failure is an error.
    static func processStat(pid: Int32) throws(ProcParseError) -> ProcStat? {
        let file = "/proc/\(pid)/stat"
        guard let text = read(file) else { return nil }
        return try ProcStat.parse(text, file: file)
    }

    static func threadSchedStat(pid: Int32, tid: Int64) throws(ProcParseError) -> SchedStat? {
        let file = "/proc/\(pid)/task/\(tid)/schedstat"
        guard let text = read(file) else { return nil }
        return try SchedStat.parse(text, file: file)
    }

    /// A thread's run-queue wait sum, when the kernel keeps schedstats. A kernel
    /// either has them or not, so after one thread's file lacks the field, no
    /// other is read (the file is long and most kernels lack it).
    static func threadWaitSum(pid: Int32, tid: Int64) -> UInt64? {
        guard schedstatsAvailable.withLock({ $0 }) else { return nil }
        guard let text = read("/proc/\(pid)/task/\(tid)/sched") else { return nil }
        let value = ProcSched.waitSumNanoseconds(text)
        if value == nil { schedstatsAvailable.withLock { $0 = false } }
        return value
    }

    private static let schedstatsAvailable = Mutex(true)
}
