import Agent
import Crypto
import Hypervisor
import VMPulseCore

/// One VM as the engine verbs show it, from its snapshot and what the events said since.
/// Each verb's fields come from one function here, and each hash is the SHA-256 of exactly
/// those fields in a canonical encoding (sorted keys, no spaces), so that the same data
/// gives the same hash after a restart or on another host. A field vmpulse cannot know is
/// absent.
struct VMView {
    let vm: VMSnapshot
    let entry: StatusBook.Entry?

    private func param(_ key: String) -> TypedValue? {
        vm.full.first { $0.key == key }?.value
    }

    /// The engine's status: the snapshot's state, overridden by a pause or resume the
    /// events told since (the full pass that read the state may be older).
    var status: String {
        guard let state = param("state.state")?.int64 else { return "Unknown" }
        let base = EngineStatus.name(state: state, reason: param("state.reason")?.int64 ?? 0)
        if let entry, base == "Up" || base == "Paused" { return entry.paused ? "Paused" : "Up" }
        return base
    }

    var pauseCode: PauseCode {
        guard status == "Paused" else { return .none }
        if let entry, entry.paused { return entry.code }
        let errors = Set(vm.description?.diskErrors.values.map { $0 } ?? [])
        if errors.contains("nospace") { return .noSpace }
        if errors.contains("failed") || param("state.reason")?.int64 == DomainState.pausedIOError { return .ioError }
        return .other
    }

    /// `Host.getAllVmRuntimeStats`, one VM. `now` is monotonic, `wallNow` Unix seconds.
    func runtime(now: Double, wallNow: Double) -> [String: JSONValue] {
        var o: [String: JSONValue] = ["status": .string(status), "hashes": .object(hashes)]
        if let cpu = vm.cpu {
            o["cpuUser"] = .double(Self.rounded(cpu.user, 100))
            o["cpuSys"] = .double(Self.rounded(cpu.system, 100))
        }
        if let available = param("balloon.available")?.number, let usable = param("balloon.usable")?.number,
           available > 0, usable >= 0, usable <= available {
            o["memUsage"] = .double(Self.rounded(100 * (available - usable) / available, 100))
        }
        if let started = vm.startedAt, wallNow >= started { o["elapsedTime"] = .int(Int64(min(wallNow - started, 1e15))) }
        if let answered = vm.lastAnswer { o["statsAge"] = .double(Self.rounded(max(0, now - answered), 1000)) }
        return o
    }

    /// `VM.getStatus`: what changes while the VM runs, apart from the counters.
    var statusInfo: [String: JSONValue] {
        var o: [String: JSONValue] = [
            "monitorResponse": .int(vm.responsive ? MonitorResponse.responsive : MonitorResponse.unresponsive),
            "pauseCode": .string(pauseCode.rawValue),
        ]
        // "" when the backend can tell that no client is connected; absent when it cannot.
        if let clients = vm.description?.displayClients { o["clientIp"] = .string(clients.first ?? "") }
        if let guest = vm.guest {
            if let v = guest.timeOffset { o["timeOffset"] = .int(v) }
            if let interfaces = guest.interfaces {
                let v4 = interfaces.filter { $0.name != "lo" }.flatMap { $0.addresses.filter { $0.type == "ipv4" }.map(\.address) }
                o["guestIPs"] = .string(v4.joined(separator: " "))
            }
            if let users = guest.users {
                o["session"] = .string(users.isEmpty ? "LoggedOff" : "UserLoggedOn")
                if let first = users.first { o["username"] = .string(first.name) }
            }
        }
        return o
    }

    /// `VM.getConfInfo`: what the VM was started with.
    var confInfo: [String: JSONValue] {
        var o: [String: JSONValue] = ["vmType": "kvm", "vmName": .string(vm.name)]
        guard let d = vm.description else { return o }
        if let v = d.pid { o["pid"] = .int(Int64(v)) }
        if let v = d.kvm { o["kvmEnable"] = .bool(v) }
        if let v = d.acpi { o["acpiEnable"] = .bool(v) }
        if let display = d.display {
            o["displayType"] = .string(display.type)
            if let v = display.address { o["displayIp"] = .string(v) }
            if let v = display.port { o["displayPort"] = .int(Int64(v)) }
            if let v = display.securePort { o["displaySecurePort"] = .int(Int64(v)) }
        }
        if let v = d.cdrom { o["cdrom"] = .string(v) }
        if let v = d.boot { o["boot"] = .string(v) }
        return o
    }

    /// `VM.getGuestDetails`: what the guest reports of itself (none without a guest agent).
    var guestDetails: [String: JSONValue] {
        guard let guest = vm.guest else { return [:] }
        var o: [String: JSONValue] = [:]
        var apps: [JSONValue] = []
        if let v = guest.kernelRelease { apps.append(.string("kernel-\(v)")) }
        if let v = guest.agentVersion { apps.append(.string("qemu-guest-agent-\(v)")) }
        if !apps.isEmpty { o["appsList"] = .array(apps) }
        if let interfaces = guest.interfaces {
            o["netIfaces"] = .array(interfaces.map { i in
                var n: [String: JSONValue] = [
                    "name": .string(i.name),
                    "inet": .array(i.addresses.filter { $0.type == "ipv4" }.map { .string($0.address) }),
                    "inet6": .array(i.addresses.filter { $0.type == "ipv6" }.map { .string($0.address) }),
                ]
                if let hw = i.hardwareAddress { n["hw"] = .string(hw) }
                return .object(n)
            })
        }
        return o
    }

    /// The guest's filesystems (`disksUsage`), from its agent.
    var disksUsage: JSONValue? {
        vm.guest?.filesystems.map { all in
            .array(all.map { f in
                var o: [String: JSONValue] = ["path": .string(f.mountpoint), "fs": .string(f.type)]
                if let v = f.totalBytes { o["total"] = .uint(v) }
                if let v = f.usedBytes { o["used"] = .uint(v) }
                return .object(o)
            })
        }
    }

    /// What the `config` hash covers: every device and drive.
    var configFields: JSONValue {
        .array((vm.description?.devices ?? []).map { .string($0) })
    }

    var hashes: [String: JSONValue] {
        [
            "info": .string(Self.hash(.object(confInfo))),
            "config": .string(Self.hash(configFields)),
            "status": .string(Self.hash(.object(statusInfo))),
            "guestDetails": .string(Self.hash(.object(guestDetails))),
        ]
    }

    /// `Host.getAllVmDeviceStats`, one VM: memory, balloon, NICs and disks with their I/O.
    var deviceStats: [String: JSONValue] {
        var o: [String: JSONValue] = [:]
        var balloon: [String: JSONValue] = [:]
        if let v = param("balloon.current") { balloon["balloon_cur"] = v.json }
        if let v = param("balloon.maximum") { balloon["balloon_max"] = v.json }
        if !balloon.isEmpty { o["balloonInfo"] = .object(balloon) }
        var memory: [String: JSONValue] = [:]
        // What the guest reports through its balloon driver; `rss` is the host's, and stays out.
        for p in vm.full where p.key.hasPrefix("balloon.") && !["balloon.current", "balloon.maximum", "balloon.rss"].contains(p.key) {
            memory[String(p.key.dropFirst("balloon.".count))] = p.value.json
        }
        if !memory.isEmpty { o["memoryStats"] = .object(memory) }
        let params = vm.params
        o["network"] = .array(Self.indexed("net", params).map { .object($0) })
        var disks = Self.indexed("block", params)
        let io = Self.indexed("io", params)
        for i in disks.indices {
            guard let name = disks[i]["name"] else { continue }
            if let match = io.first(where: { $0["name"] == name }) { disks[i]["io"] = .object(match) }
        }
        o["disks"] = .array(disks.map { .object($0) })
        if let usage = disksUsage { o["disksUsage"] = usage }
        return o
    }

    /// The entries `prefix.N.rest` of a record, as one object per N (keys `rest`), in order of N.
    static func indexed(_ prefix: String, _ params: [StatsParam]) -> [[String: JSONValue]] {
        var entries: [Int: [String: JSONValue]] = [:]
        let head = prefix + "."
        for p in params where p.key.hasPrefix(head) {
            let rest = p.key.dropFirst(head.count)
            guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]) else { continue }
            entries[n, default: [:]][String(rest[rest.index(after: dot)...])] = p.value.json
        }
        return entries.keys.sorted().compactMap { entries[$0] }
    }

    /// The first 64 bits of the SHA-256 of the value's canonical text, in hex: enough to tell
    /// a change (a chance of 2^-64 to miss one), and 64 bytes less per VM in the runtime
    /// stats than 128 bits (100 VMs: 30.5 KiB with 128 bits, measured by make bench-rpc).
    static func hash(_ value: JSONValue) -> String {
        let digest = SHA256.hash(data: Array(JSONText.serialize(value).utf8))
        return digest.prefix(8).map { byte in
            let s = String(byte, radix: 16)
            return byte < 16 ? "0" + s : s
        }.joined()
    }

    static func rounded(_ value: Double, _ scale: Double) -> Double {
        guard value.isFinite else { return 0 }
        return (value * scale).rounded() / scale
    }
}
