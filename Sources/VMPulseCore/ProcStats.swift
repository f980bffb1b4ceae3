/// A /proc file whose text was not what the kernel writes.
public struct ProcParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var detail: String
    public var description: String { "cannot read \(file): \(detail)" }
}

/// The fields vmpulse needs from `/proc/PID/stat`.
public struct ProcStat: Sendable, Equatable {
    /// User and system time, in clock ticks (`sysconf(_SC_CLK_TCK)`), of every thread, live or exited.
    public var userTicks: UInt64
    public var systemTicks: UInt64
    /// Resident set size, in pages.
    public var rssPages: UInt64
    /// When the process started, in clock ticks since the host booted (field 22).
    public var startTicks: UInt64 = 0

    /// Parses the text of `/proc/PID/stat`. The command name (field 2) may hold
    /// spaces and parentheses, so fields are counted from the last `)`.
    public static func parse(_ text: String, file: String = "/proc/PID/stat") throws(ProcParseError) -> ProcStat {
        guard let close = text.lastIndex(of: ")") else {
            throw ProcParseError(file: file, detail: "no ')' after the command name")
        }
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // fields[0] is field 3 (state); utime is field 14, stime 15, starttime 22, rss 24.
        guard fields.count > 21,
              let utime = UInt64(fields[11]), let stime = UInt64(fields[12]), let start = UInt64(fields[19]),
              let rss = Int64(fields[21].trimmingCharacters(in: "\n"))
        else {
            throw ProcParseError(file: file, detail: "expected at least 24 numeric fields")
        }
        return ProcStat(userTicks: utime, systemTicks: stime, rssPages: UInt64(max(rss, 0)), startTicks: start)
    }
}

/// `/proc/stat`'s `btime`: when the host booted, in Unix seconds.
public enum ProcBootTime {
    public static func parse(_ text: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return UInt64(line.dropFirst(6).trimmingCharacters(in: " "))
        }
        return nil
    }
}

/// `/proc/PID/task/TID/schedstat`: time on the CPU and time waiting in the run queue, in ns.
public struct SchedStat: Sendable, Equatable {
    public var runNanoseconds: UInt64
    public var runQueueWaitNanoseconds: UInt64

    public static func parse(_ text: String, file: String = "schedstat") throws(ProcParseError) -> SchedStat {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, let run = UInt64(fields[0]), let wait = UInt64(fields[1]) else {
            throw ProcParseError(file: file, detail: "expected two numbers, got '\(text.prefix(80))'")
        }
        return SchedStat(runNanoseconds: run, runQueueWaitNanoseconds: wait)
    }
}

/// `/proc/PID/task/TID/sched` holds `wait_sum` (ms with a fraction) only when the
/// kernel keeps schedstats; then libvirt reports it as `vcpu.N.wait`.
public enum ProcSched {
    public static func waitSumNanoseconds(_ text: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.contains("wait_sum") {
            guard let colon = line.lastIndex(of: ":") else { return nil }
            let number = line[line.index(after: colon)...].trimmingCharacters(in: " ")
            // 2^64 as a double: UInt64(_:) traps at or past it.
            guard let ms = Double(number), ms >= 0, ms * 1_000_000 < 18_446_744_073_709_551_616.0 else { return nil }
            return UInt64(ms * 1_000_000)
        }
        return nil
    }
}

extension Substring {
    func trimmingCharacters(in set: Character) -> Substring {
        var s = self
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return s
    }
}
