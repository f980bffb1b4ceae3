import Foundation

/// What a process has used, from /proc, for the benchmarks.
public enum ProcessUsage {
    /// utime + stime of a process, in seconds.
    public static func cpuSeconds(_ pid: pid_t) throws -> Double {
        let text = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        guard let close = text.lastIndex(of: ")") else { throw TestBedError("bad /proc/\(pid)/stat") }
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 13, let u = Double(f[11]), let s = Double(f[12]) else { throw TestBedError("bad /proc/\(pid)/stat") }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The pid of the first process named `name` (its `comm`).
    public static func pid(of name: String) throws -> pid_t {
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc") {
            guard let pid = pid_t(entry),
                  let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8) else { continue }
            if comm.trimmingCharacters(in: .whitespacesAndNewlines) == name { return pid }
        }
        throw TestBedError("no \(name) process")
    }
}
