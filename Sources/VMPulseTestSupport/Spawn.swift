import Glibc

/// Runs a program and waits for it, with posix_spawn and waitpid.
///
/// Foundation's Process was seen here to hang in waitUntilExit after its child
/// (QEMU's -daemonize parent) had exited, so the test bed spawns by hand.
public enum Spawn {
    /// Runs `program` with `arguments`, its output appended to `outputPath`; returns the exit status
    /// (128 + signal number when killed by a signal).
    public static func run(_ program: String, _ arguments: [String], outputPath: String = "/dev/null", errorPath: String? = nil) throws -> Int32 {
        try measure(program, arguments, outputPath: outputPath, errorPath: errorPath).status
    }

    /// How a finished program ran.
    public struct Measurement: Sendable {
        public var status: Int32
        /// Wall time from spawn to exit.
        public var wall: Duration
        /// ru_maxrss from wait4, in bytes. Beware: a child spawned from a large
        /// process inherits that process's peak at exec (Linux records the old mm's
        /// high-water mark), so use `peakRSS(of:)` to measure a program's own peak.
        public var peakRSSBytes: Int
        /// User and system CPU time of the child.
        public var cpu: Duration
    }

    /// Runs a program, timing it and reading its peak memory with wait4.
    public static func measure(_ program: String, _ arguments: [String], outputPath: String = "/dev/null", errorPath: String? = nil) throws -> Measurement {
        let began = ContinuousClock.now
        let pid = try Spawn.start(program, arguments, outputPath: outputPath, errorPath: errorPath)
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 {
            guard errno == EINTR else { throw TestBedError("wait4 for \(program) failed: \(String(cString: strerror(errno)))") }
        }
        let wall = ContinuousClock.now - began
        let low = status & 0x7f
        func duration(_ t: timeval) -> Duration { .seconds(t.tv_sec) + .microseconds(t.tv_usec) }
        return Measurement(
            status: low == 0 ? (status >> 8) & 0xff : 128 + low, wall: wall,
            peakRSSBytes: usage.ru_maxrss * 1024, cpu: duration(usage.ru_utime) + duration(usage.ru_stime))
    }

    /// Starts a program in the background (output appended to `outputPath`) and returns its pid.
    public static func start(_ program: String, _ arguments: [String], outputPath: String = "/dev/null", errorPath: String? = nil) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let errorPath {
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }

        // The child starts with every signal at its default and none blocked: a test
        // runner's mask would otherwise be inherited, and QEMU would ignore SIGTERM.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, program, &actions, &attributes, argv, environ)
        guard rc == 0 else {
            throw TestBedError("cannot start \(program): \(String(cString: strerror(rc)))")
        }
        return pid
    }

    /// The exit status of a background child if it has exited (128 + signal when killed), else nil. Reaps it.
    public static func exited(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        let low = status & 0x7f
        return low == 0 ? (status >> 8) & 0xff : 128 + low
    }

    /// What a finished program printed.
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs a program and returns its exit status and what it printed on each stream.
    /// SIGTERM, then waits for the exit: its status, or nil (after a SIGKILL) when it did
    /// not exit within `timeout`.
    public static func terminate(_ pid: pid_t, timeout: Duration) async throws -> Int32? {
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let code = exited(pid) { return code }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(pid, SIGKILL)
        _ = exited(pid)
        return nil
    }

    /// SIGKILL, and waits (up to 2 s) until the process is gone.
    public static func killHard(_ pid: pid_t) async throws {
        kill(pid, SIGKILL)
        for _ in 0..<100 {
            if exited(pid) != nil { return }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    public static func capture(_ program: String, _ arguments: [String]) throws -> Output {
        let base = "/tmp/vmpulse-capture-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer {
            unlink(base + ".out")
            unlink(base + ".err")
        }
        let status = try run(program, arguments, outputPath: base + ".out", errorPath: base + ".err")
        return Output(status: status, stdout: readFile(base + ".out"), stderr: readFile(base + ".err"))
    }

    static func readFile(_ path: String) -> String {
        guard let f = fopen(path, "r") else { return "" }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A program built beside the test binary (`vmpulse`, `vmpulse-testbed`).
    public static func builtProduct(_ name: String) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        let dir = exe.split(separator: "/").dropLast().joined(separator: "/")
        return "/" + dir + "/" + name
    }

    /// A program's own peak RSS in bytes, measured through GNU time (which forks from a
    /// small process, so the figure is the program's and not its parent's).
    public static func peakRSS(_ program: String, _ arguments: [String]) throws -> Int {
        let report = "/tmp/vmpulse-rss-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(report) }
        let status = try run("/usr/bin/time", ["-f", "%M", "-o", report, program] + arguments)
        guard status == 0, let kib = Int(readFile(report).split(separator: "\n").last ?? "") else {
            throw TestBedError("/usr/bin/time \(program) failed (\(status)); is the 'time' package installed? (make bench installs it)")
        }
        return kib * 1024
    }
}
