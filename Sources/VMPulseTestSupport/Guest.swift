import Foundation
import Glibc

/// A running QEMU test guest.
public final class Guest: Sendable {
    public let spec: GuestSpec
    public let directory: String
    /// vmpulse's monitor socket for this VM.
    public let socketPath: String
    public let disks: [String]
    public let pidFile: String
    public let serialLog: String
    /// The guest's command shell (second serial port).
    public let shellSocket: String
    /// A monitor for the test's own commands (block_resize, query-blockstats).
    public let controlSocket: String
    /// For a guest run by libvirt (LibvirtTestBed): the URI of its libvirtd; the domain's name is
    /// `name`. nil for a guest the test bed runs itself. A libvirt guest has no vmpulse monitor
    /// (`socketPath` is empty) and no control monitor (see `Guest.monitorCommand`).
    public let libvirtURI: String?
    private let pidBox = PIDBox()

    init(spec: GuestSpec, directory: String, socketPath: String, disks: [String], pidFile: String? = nil, libvirtURI: String? = nil) {
        self.spec = spec
        self.directory = directory
        self.socketPath = socketPath
        self.disks = disks
        self.libvirtURI = libvirtURI
        self.pidFile = pidFile ?? directory + "/qemu.pid"
        self.serialLog = directory + "/serial.log"
        self.shellSocket = directory + "/shell.sock"
        self.controlSocket = directory + "/control.sock"
    }

    public var name: String { spec.name }
    /// The host side of the guest-agent port (`NAME.qga` beside `NAME.sock`), with `GuestSpec.guestAgent`.
    public var agentSocket: String {
        (socketPath.hasSuffix(".sock") ? String(socketPath.dropLast(5)) : socketPath) + ".qga"
    }
    public var uuid: String { spec.uuid }
    public var pid: Int32 { pidBox.value }

    func readPID() throws {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0
        else { throw TestBedError("QEMU for \(spec.name) wrote no pid file at \(pidFile)") }
        pidBox.value = pid
    }

    /// Waits until the guest has booted and its command shell listens (`VMPULSE-READY` on the console).
    public func waitReady(timeout: Duration = .seconds(60)) async throws {
        try await waitForConsole("VMPULSE-READY", timeout: timeout)
    }

    /// Waits until the console shows `text`.
    public func waitForConsole(_ text: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let log = try? String(contentsOfFile: serialLog, encoding: .isoLatin1), log.contains(text) { return }
            guard isRunning else { throw TestBedError("QEMU for \(spec.name) exited before its console showed '\(text)'") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestBedError("\(spec.name)'s console did not show '\(text)' within \(timeout)")
    }

    /// Opens the guest's command shell.
    public func shell() async throws -> GuestShell {
        try await GuestShell.connect(path: shellSocket)
    }

    /// Whether QEMU is alive (a zombie, which an init that does not reap leaves behind, is not).
    public var isRunning: Bool {
        guard pid > 0, let state = Self.processState(pid) else { return false }
        return state != "Z" && state != "X"
    }

    /// The state letter of /proc/PID/stat, read with read(2) (Foundation reads /proc files unreliably).
    static func processState(_ pid: Int32) -> Character? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 512)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, 512) }
        guard n > 0 else { return nil }
        let text = String(decoding: bytes[0..<n], as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        return text[close...].dropFirst(2).first
    }

    public func signal(_ signal: Int32) {
        if pid > 0 { kill(pid, signal) }
    }

    /// Stops QEMU (SIGCONT first, in case a test stopped it) and waits up to 5 s for it to go.
    /// A libvirt guest is destroyed through libvirt first (`virsh destroy`), so that its domain goes too.
    public func stop() {
        if let libvirtURI, pid > 0, isRunning {
            kill(pid, SIGCONT)
            _ = try? Spawn.run("/usr/bin/timeout", ["10", "/usr/bin/virsh", "-q", "-c", libvirtURI, "destroy", spec.name])
        }
        Self.stop(pid: pid)
    }

    static func stop(pid: Int32) {
        func running() -> Bool {
            guard pid > 0, let state = processState(pid) else { return false }
            return state != "Z" && state != "X"
        }
        guard running() else { return }
        kill(pid, SIGCONT)
        kill(pid, SIGTERM)
        for _ in 0..<100 {
            guard running() else { return }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        for _ in 0..<20 {
            guard running() else { return }
            usleep(50_000)
        }
    }
}

private final class PIDBox: @unchecked Sendable {
    // @unchecked: written once at launch, under the lock.
    private let lock = NSLock()
    private var pid: Int32 = 0
    var value: Int32 {
        get { lock.withLock { pid } }
        set { lock.withLock { pid = newValue } }
    }
}
