import Libvirt
import Synchronization
import VMPulseCore

/// `guestInfo` on the libvirt backend: libvirt talks to the guest agent over the domain's
/// `org.qemu.guest_agent.0` channel; vmpulse asks `virDomainGetGuestInfo`,
/// `virDomainInterfaceAddresses` (source: agent) and `virDomainGetTime`. libvirt does not
/// give the agent's version (absent). A domain whose XML has no agent channel, or whose
/// agent does not answer, has no guest data.
extension LibvirtBackend {
    /// The three calls run on one libvirt thread, and a domain gets a new one only once the
    /// last has ended: the caller gives up at its deadline, but the thread stays in libvirt
    /// until the agent's timeout or the domain's job lock lets it go (a stopped QEMU holds
    /// the job), and one per full pass would pile threads up.
    public func guestInfo(machine: String) async -> GuestInfo? {
        // Without a guest-agent channel in its XML (or before its first description) a
        // domain is not asked: nothing could answer, and each call is a libvirt thread.
        guard agentChannels[machine] == true, guestCalls.insert(machine) else { return nil }
        let book = guestCalls
        let started = MachineSet()  // holds `machine` once the call is on its thread
        typealias Answer = (params: [LibvirtParam], interfaces: [LibvirtGuestInterface]?, time: (seconds: Int64, nanoseconds: UInt32)?)
        let answer: Answer
        do throws(MachineError) {
            answer = try await domainCall(machine, "virDomainGetGuestInfo") { conn, uuid throws(LibvirtError) -> Answer in
                _ = started.insert(machine)
                defer { book.remove(machine) }
                let params = try conn.guestInfo(uuid: uuid)
                return (params, try? conn.guestInterfaces(uuid: uuid), try? conn.guestTime(uuid: uuid))
            }
        } catch {
            // A call that never reached its thread (no connection, too many calls in flight) holds nothing.
            if !started.contains(machine) { book.remove(machine) }
            return nil
        }
        var info = LibvirtGuestInfo.read(answer.params)
        if let interfaces = answer.interfaces {
            info.interfaces = interfaces.prefix(GuestInfoReader.maxItems).map { i in
                GuestInfo.Interface(name: i.name, hardwareAddress: i.hardwareAddress, addresses: i.addresses.prefix(GuestInfoReader.maxItems).map {
                    GuestInfo.Address(type: $0.type, address: $0.address, prefix: (0...128).contains($0.prefix) ? $0.prefix : nil)
                })
            }
        }
        if let time = answer.time {
            let offset = Double(time.seconds) + Double(time.nanoseconds) / 1e9 - MonotonicTime.wallNow()
            if offset.isFinite, abs(offset) < 1e12 { info.timeOffset = Int64(offset.rounded()) }
        }
        return info
    }
}

/// A set of machines shared with libvirt's call threads.
final class MachineSet: Sendable {
    private let set = Mutex<Set<String>>([])

    /// Whether `machine` was not in the set yet.
    func insert(_ machine: String) -> Bool { set.withLock { $0.insert(machine).inserted } }
    func remove(_ machine: String) { _ = set.withLock { $0.remove(machine) } }
    func contains(_ machine: String) -> Bool { set.withLock { $0.contains(machine) } }
}

/// `virDomainGetGuestInfo`'s typed parameters into `GuestInfo`, bounded as the QMP
/// backend's reader is.
enum LibvirtGuestInfo {
    static func read(_ params: [LibvirtParam]) -> GuestInfo {
        var values: [String: LibvirtValue] = [:]
        for p in params { values[p.name] = p.value }
        func text(_ key: String) -> String? {
            guard case .string(let s)? = values[key], s.utf8.count <= GuestInfoReader.maxText else { return nil }
            return s
        }
        func number(_ key: String) -> UInt64? {
            switch values[key] {
            case .uint(let v)?: return v
            case .int(let v)? where v >= 0: return UInt64(v)
            default: return nil
            }
        }
        func count(_ key: String) -> Int? {
            number(key).flatMap { $0 <= UInt64(GuestInfoReader.maxItems) ? Int($0) : nil }
        }
        var info = GuestInfo()
        info.kernelRelease = text("os.kernel-release")
        info.kernelVersion = text("os.kernel-version")
        info.osName = text("os.pretty-name")
        info.hostname = text("hostname")
        if let n = count("user.count") {
            info.users = (0..<n).compactMap { i in
                text("user.\(i).name").map { GuestInfo.User(name: $0, loginTime: number("user.\(i).login-time").map { Double($0) / 1000 }) }
            }
        }
        if let n = count("fs.count") {
            info.filesystems = (0..<n).compactMap { i in
                guard let mountpoint = text("fs.\(i).mountpoint"), let type = text("fs.\(i).fstype") else { return nil }
                return GuestInfo.Filesystem(mountpoint: mountpoint, type: type, totalBytes: number("fs.\(i).total-bytes"),
                                            usedBytes: number("fs.\(i).used-bytes"))
            }
        }
        return info
    }
}

extension LibvirtBackend {
    /// libvirt's public API has no `guest-ping` (only libvirt-qemu's unsupported
    /// passthrough), so a ping is one guest-information reading: it reaches the agent
    /// through libvirt as the ping would, bounded by the same agent timeout.
    public func pingGuest(machine: String) async throws(MachineError) {
        guard await guestInfo(machine: machine) != nil else {
            throw MachineError(.timeout, "the guest agent of \(machine) did not answer through libvirt (no agent channel, or no answer in time)")
        }
    }
}
