import QMP
import VMPulseCore

/// `describe` on the QMP backend: a handful of queries in one write, on the agent's full
/// pass. A query this QEMU lacks (`query-spice` in a build without SPICE) leaves its
/// fields out; a monitor that does not answer fails the whole description.
extension QMPBackend {
    static let describeQueries: [QMPQuery] = [
        QMPQuery("query-kvm"), QMPQuery("query-vnc"), QMPQuery("query-spice"), QMPQuery("query-block"),
        QMPQuery("qom-list", ["path": .string("/machine/peripheral")]),
        QMPQuery("qom-list", ["path": .string("/machine/peripheral-anon")]),
        QMPQuery("qom-get", ["path": .string("/machine"), "property": .string("acpi")]),
    ]

    public func describe(machine: String) async throws(MachineError) -> MachineDescription {
        guard let facts = await commandFacts(socketPath: machine) else { throw MachineError(.gone, "no VM \(machine)") }
        let replies: QMPReplies
        do throws(QMPError) { replies = try await run(socketPath: machine, Self.describeQueries) } catch { throw MachineError(error) }
        return QMPDescription.build(replies: replies, pid: facts.pid, arguments: facts.arguments)
    }
}

enum QMPDescription {
    static func build(replies: QMPReplies, pid: Int32?, arguments: QEMUArguments?) -> MachineDescription {
        var d = MachineDescription(pid: pid)
        let q = QMPBackend.describeQueries
        if let kvm = try? replies.reply(q[0]) { d.kvm = kvm["enabled"]?.boolValue }
        d.display = display(vnc: try? replies.reply(q[1]), spice: try? replies.reply(q[2]))
        d.displayClients = clients(vnc: try? replies.reply(q[1]), spice: try? replies.reply(q[2]))
        if let acpi = (try? replies.reply(q[6]))?.stringValue {
            d.acpi = acpi != "off" && !(arguments?.noACPI ?? false)
        } else if arguments?.noACPI == true {
            d.acpi = false
        }
        d.boot = arguments?.bootOrder
        var devices: [String] = []
        for (index, path) in [(4, "peripheral"), (5, "peripheral-anon")] {
            for item in (try? replies.reply(q[index]))?.arrayValue ?? [] {
                guard let name = item["name"]?.stringValue, let type = item["type"]?.stringValue, type.hasPrefix("child<") else { continue }
                devices.append("\(path)/\(name) \(type)")
            }
        }
        for drive in (try? replies.reply(q[3]))?.arrayValue ?? [] {
            guard let name = drive["device"]?.stringValue ?? drive["qdev"]?.stringValue else { continue }
            let file = drive["inserted"]?["file"]?.stringValue
            let readOnly = drive["inserted"]?["ro"]?.boolValue ?? false
            devices.append("drive \(name) \(file ?? "(empty)")\(readOnly ? " ro" : "")")
            if let status = drive["io-status"]?.stringValue, status == "nospace" || status == "failed" { d.diskErrors[name] = status }
            // The first removable drive with a medium (QEMU has no type for a CD-ROM in
            // query-block; a removable, read-only medium is one).
            if d.cdrom == nil, drive["removable"]?.boolValue == true, readOnly, let file { d.cdrom = file }
        }
        d.devices = devices.sorted()
        return d
    }

    static func display(vnc: JSONValue?, spice: JSONValue?) -> MachineDescription.Display? {
        if let spice, spice["enabled"]?.boolValue == true {
            return MachineDescription.Display(
                type: "spice", address: spice["host"]?.stringValue, port: port(spice["port"]?.int64Value),
                securePort: port(spice["tls-port"]?.int64Value))
        }
        if let vnc, vnc["enabled"]?.boolValue == true {
            let port = port(vnc["service"]?.stringValue.flatMap { Int64($0) })
            let secure = vnc["auth"]?.stringValue.map { $0.hasPrefix("vencrypt") } ?? false
            return MachineDescription.Display(
                type: "vnc", address: vnc["host"]?.stringValue, port: secure ? nil : port, securePort: secure ? port : nil)
        }
        return nil
    }

    /// A TCP port from QEMU, only when it is one (0 and -1 mean none: SPICE's unset ports).
    static func port(_ value: Int64?) -> Int? {
        guard let value, (1...65535).contains(value) else { return nil }
        return Int(value)
    }

    static func clients(vnc: JSONValue?, spice: JSONValue?) -> [String] {
        let all = (vnc?["clients"]?.arrayValue ?? []) + (spice?["channels"]?.arrayValue ?? [])
        return Array(Set(all.compactMap { $0["host"]?.stringValue })).sorted()
    }
}
