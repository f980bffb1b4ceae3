import Glibc
import QMP
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
        let path = Self.guestAgentPath(socketPath: machine)
        var st = stat()
        guard monitors[machine] != nil, stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        let timeout = options.timeout
        let client: GuestAgentClient
        if let open = guestAgents[machine] {
            client = open
        } else {
            do throws(QMPError) { client = try await GuestAgentClient.connect(socketPath: path, timeout: timeout) } catch { return nil }
            guestAgents[machine] = client
        }
        do throws(QMPError) {
            return try await Self.read(client, timeout: timeout)
        } catch {
            guestAgents[machine] = nil
            await client.close()
            return nil
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
