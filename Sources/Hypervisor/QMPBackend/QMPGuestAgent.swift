import Glibc
import QMP
import Synchronization
import VMPulseCore

/// `guestInfo` on the QMP backend: the guest agent's port is a socket beside the VM's
/// monitor, `NAME.qga` for `NAME.sock` (`-chardev socket,path=DIR/NAME.qga,server=on,wait=off,id=qga0
/// -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0`).
/// vmpulse keeps one connection per VM; a guest agent that does not answer within the
/// timeout is reported absent, and its connection is opened afresh next time.
extension QMPBackend {
    static func guestAgentPath(socketPath: String) -> String {
        var base = socketPath
        for suffix in [".sock", ".qmp"] where base.hasSuffix(suffix) { base.removeLast(suffix.count) }
        return base + ".qga"
    }

    public func guestInfo(machine: String) async -> GuestInfo? {
        let timeout = options.timeout
        do throws(QMPError) {
            return try await withGuestAgent(machine) { client throws(QMPError) in try await Self.read(client, timeout: timeout) }
        } catch {
            return nil
        }
    }

    /// `guest-ping`, for a heartbeat link to the guest.
    public func pingGuest(machine: String) async throws(MachineError) {
        let timeout = options.timeout
        do throws(QMPError) {
            _ = try await withGuestAgent(machine) { client throws(QMPError) in try await client.execute("guest-ping", timeout: timeout) }
        } catch {
            throw MachineError(error)
        }
    }

    /// Runs `body` on the VM's guest-agent connection (opened if needed), one caller at a
    /// time: the port serves one client, and its calls carry no ids, so two callers (the
    /// full pass's reading and a heartbeat's ping) must not interleave on it. A failed
    /// call closes the connection; the next caller opens it afresh.
    func withGuestAgent<T: Sendable>(_ machine: String, _ body: (GuestAgentClient) async throws(QMPError) -> T) async throws(QMPError) -> T {
        let path = Self.guestAgentPath(socketPath: machine)
        var st = stat()
        guard monitors[machine] != nil else { throw .noListener(path: machine) }
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { throw .noListener(path: path) }
        await guestAgentGate.acquire(machine)
        defer { guestAgentGate.release(machine) }
        let client: GuestAgentClient
        if let open = guestAgents[machine] {
            client = open
        } else {
            client = try await GuestAgentClient.connect(socketPath: path, timeout: options.timeout)
            guestAgents[machine] = client
        }
        do throws(QMPError) {
            return try await body(client)
        } catch {
            guestAgents[machine] = nil
            await client.close()
            throw error
        }
    }

    /// The agent's answers, one call at a time; a command this agent refuses leaves its
    /// fields out, a timeout or a broken connection ends the reading.
    static func read(_ client: GuestAgentClient, timeout: Duration) async throws(QMPError) -> GuestInfo {
        func ask(_ command: String) async throws(QMPError) -> JSONValue? {
            do throws(QMPError) { return try await client.execute(command, timeout: timeout) } catch {
                if case .commandFailed = error { return nil }
                throw error
            }
        }
        var info = GuestInfo()
        info.agentVersion = GuestInfoReader.text(try await ask("guest-info")?["version"])
        if let os = try await ask("guest-get-osinfo") {
            info.kernelRelease = GuestInfoReader.text(os["kernel-release"])
            info.kernelVersion = GuestInfoReader.text(os["kernel-version"])
            info.osName = GuestInfoReader.text(os["pretty-name"])
        }
        info.hostname = GuestInfoReader.text(try await ask("guest-get-host-name")?["host-name"])
        info.interfaces = try await ask("guest-network-get-interfaces").flatMap(GuestInfoReader.interfaces)
        info.filesystems = try await ask("guest-get-fsinfo").flatMap(GuestInfoReader.filesystems)
        info.users = try await ask("guest-get-users").flatMap(GuestInfoReader.users)
        if let time = try await ask("guest-get-time") {
            info.timeOffset = GuestInfoReader.timeOffset(time, hostNow: MonotonicTime.wallNow())
        }
        return info
    }
}

/// One holder per machine's guest-agent port; the others wait their turn, in order.
final class GuestAgentGate: Sendable {
    private let state = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    func acquire(_ machine: String) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { waiting -> Bool in
                if waiting[machine] == nil {
                    waiting[machine] = []
                    return true
                }
                waiting[machine]?.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func release(_ machine: String) {
        let next = state.withLock { waiting -> CheckedContinuation<Void, Never>? in
            guard var queue = waiting[machine], !queue.isEmpty else {
                waiting[machine] = nil
                return nil
            }
            let first = queue.removeFirst()
            waiting[machine] = queue
            return first
        }
        next?.resume()
    }
}
