import Foundation
import Glibc

/// A private libvirtd for the tests (scripts/libvirtd.sh): its own mount namespace, its state,
/// config, logs and socket under `directory`, so it neither needs nor disturbs a host's libvirtd.
///
/// Clients reach it at `uri` (`qemu:///system?socket=DIR/run/libvirt/libvirt-sock`). Its log is
/// `logPath`; each QEMU's is DIR/log/qemu/NAME.log. Needs root.
public final class LibvirtDaemon: @unchecked Sendable {
    // @unchecked: immutable; the script calls are serialised by `lock`.
    public let directory: String
    /// The daemon's unix socket.
    public let socketPath: String
    /// What clients pass to virConnectOpen / `virsh -c`.
    public let uri: String
    public var logPath: String { directory + "/log/libvirtd.log" }
    private let lock = NSLock()

    /// scripts/libvirtd.sh in this repository.
    public static let script: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent("scripts/libvirtd.sh").path
    }()

    private init(directory: String) {
        self.directory = directory
        socketPath = directory + "/run/libvirt/libvirt-sock"
        uri = "qemu:///system?socket=" + socketPath
    }

    /// Starts a libvirtd in `directory` (or finds the one already running there).
    public static func start(directory: String) throws -> LibvirtDaemon {
        let daemon = LibvirtDaemon(directory: directory)
        try daemon.start()
        return daemon
    }

    /// Starts the daemon again in the same directory (idempotent). A daemon stopped with
    /// `keepGuests` reconnects to the domains that ran on.
    public func start() throws {
        try lock.withLock { try runScript(["start", directory]) }
    }

    /// Stops the daemon (idempotent). Without `keepGuests` its QEMUs are killed too and the
    /// dead domains' state is dropped; with it, the domains run on without their libvirtd.
    public func stop(keepGuests: Bool = false) throws {
        try lock.withLock { try runScript(["stop", directory] + (keepGuests ? ["--keep-guests"] : [])) }
    }

    /// Stops libvirtd and starts it again; running domains survive.
    public func restart() throws {
        try stop(keepGuests: true)
        try start()
    }

    /// Whether the daemon's socket exists (it is removed when the daemon stops).
    public var isListening: Bool {
        let type = (try? FileManager.default.attributesOfItem(atPath: socketPath))?[.type] as? FileAttributeType
        return type == .typeSocket
    }

    /// Runs `virsh -c uri ARGS` (bounded: 60 s) and returns what it printed; a failure is an error
    /// carrying virsh's message.
    @discardableResult
    public func virsh(_ arguments: [String]) throws -> String {
        let out = try Spawn.capture("/usr/bin/timeout", ["60", "/usr/bin/virsh", "-q", "-c", uri] + arguments)
        guard out.status == 0 else {
            let reason = out.status == 124 ? "timed out after 60 s" : out.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw TestBedError("virsh \(arguments.joined(separator: " ")) failed (\(out.status)): \(reason) (libvirtd log: \(logPath))")
        }
        return out.stdout
    }

    private func runScript(_ arguments: [String]) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.script) else {
            throw TestBedError("\(Self.script) is missing or not executable")
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/libvirtd") else {
            throw TestBedError("/usr/sbin/libvirtd is missing: run 'make setup' (installs libvirt-daemon and libvirt-daemon-driver-qemu)")
        }
        let out = try Spawn.capture(Self.script, arguments)
        guard out.status == 0 else {
            throw TestBedError("scripts/libvirtd.sh \(arguments.joined(separator: " ")) failed (\(out.status)): \(out.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}

// MARK: - The process-wide daemon of the test suite

extension LibvirtDaemon {
    /// The test process's own libvirtd, started on first use in /tmp/vmpulse-libvirtd-PID and
    /// stopped (with its QEMUs) when the process exits. Daemons left by test processes that died
    /// without exiting are stopped here first. Tests that stop or restart libvirtd must use a
    /// daemon of their own (`start(directory:)`), not this one: other tests share it.
    public static func shared() throws -> LibvirtDaemon {
        try SharedDaemon.box.lock.withLock {
            if let daemon = SharedDaemon.box.daemon {
                if !daemon.isListening { try daemon.start() }  // a test stopped it after all
                return daemon
            }
            sweepStale()
            let dir = sharedPrefix + String(getpid())
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let owner = "\(getpid()) \(processStartTime(getpid()) ?? "?")\n"
            try owner.write(toFile: dir + "/owner", atomically: true, encoding: .utf8)
            let daemon = LibvirtDaemon(directory: dir)
            if !SharedDaemon.box.exitHookInstalled {
                atexit { LibvirtDaemon.stopShared() }
                SharedDaemon.box.exitHookInstalled = true
            }
            try daemon.start()
            SharedDaemon.box.daemon = daemon
            return daemon
        }
    }

    /// Stops the shared daemon and its QEMUs and removes its directory (runs at exit by itself).
    public static func stopShared() {
        let daemon = SharedDaemon.box.lock.withLock {
            defer { SharedDaemon.box.daemon = nil }
            return SharedDaemon.box.daemon
        }
        guard let daemon else { return }
        try? daemon.stop()
        try? FileManager.default.removeItem(atPath: daemon.directory)
    }

    static let sharedPrefix = "/tmp/vmpulse-libvirtd-"

    /// Stops the daemons in /tmp/vmpulse-libvirtd-* whose owning process is gone.
    static func sweepStale() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for name in names where name.hasPrefix("vmpulse-libvirtd-") {
            let dir = "/tmp/" + name
            let owner = ((try? String(contentsOfFile: dir + "/owner", encoding: .utf8)) ?? "")
                .split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if owner.count == 2, let pid = Int32(owner[0]), pid > 0, processStartTime(pid) == owner[1] { continue }
            // No owner yet: maybe another process is just making it.
            if owner.count != 2, let made = (try? FileManager.default.attributesOfItem(atPath: dir))?[.modificationDate] as? Date,
               made.timeIntervalSinceNow > -60 { continue }
            let stale = LibvirtDaemon(directory: dir)
            if (try? stale.stop()) != nil { try? FileManager.default.removeItem(atPath: dir) }
        }
    }

    /// Field 22 of /proc/PID/stat (start time in clock ticks since boot): with the pid, it names a
    /// process uniquely. Read with read(2) (Foundation reads /proc files unreliably).
    static func processStartTime(_ pid: Int32) -> String? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 1024)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, 1024) }
        guard n > 0 else { return nil }
        let text = String(decoding: bytes[0..<n], as: UTF8.self)
        guard let paren = text.lastIndex(of: ")") else { return nil }
        // After "pid (comm) " come fields 3...; the start time is field 22, index 19 here.
        let fields = text[text.index(after: paren)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }
}

private final class SharedDaemon: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    static let box = SharedDaemon()
    let lock = NSLock()
    var daemon: LibvirtDaemon?
    var exitHookInstalled = false
}
