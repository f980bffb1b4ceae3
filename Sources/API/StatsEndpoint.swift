import Agent
import VMPulseCore

/// `GET /v1/stats`: the latest snapshot, never a call to QEMU.
///
/// Query: `group` (comma-separated, repeatable; default every group), `vm` (name or
/// UUID, repeatable; default every VM), `enforce` (`1`/`true`: an unsupported group is
/// an error), `format` (`json`, the default, or `text`, the `virsh domstats` form).
/// Answers 200 with the records; 400 when `enforce` refuses a group or a parameter
/// is wrong; 404 when a named VM is not on this host. Header `X-VMPulse-Left-Out`
/// lists groups left out; in the text form, `X-VMPulse-Errors` holds each VM's problems
/// as a JSON array (the JSON form has them in each record).
public enum StatsEndpoint {
    public struct Answer: Sendable, Equatable {
        public var status: Int
        public var contentType: String
        /// The body's bytes (UTF-8), as they are sent.
        public var bytes: [UInt8]
        public var headers: [String: String] = [:]

        public init(status: Int, contentType: String, body: String, headers: [String: String] = [:]) {
            self.init(status: status, contentType: contentType, bytes: Array(body.utf8), headers: headers)
        }

        public init(status: Int, contentType: String, bytes: [UInt8], headers: [String: String] = [:]) {
            self.status = status
            self.contentType = contentType
            self.bytes = bytes
            self.headers = headers
        }

        public var body: String { String(decoding: bytes, as: UTF8.self) }
    }

    public static let supportedGroups: Set<StatsGroup> = [.state, .cpuTotal, .balloon, .vcpu, .interface, .block, .io, .thin, .heartbeat, .iothread]

    /// - Parameter thin: the `thin` and `heartbeat` groups of a VM (by name and UUID), from the
    ///   thin-disk monitor and the heartbeat (the record keeps those of the groups asked for).
    public static func answer(
        groups: [String], vms: [String], enforce: String?, format: String?, snapshot: [VMSnapshot], now: Double,
        thin: (String, String) -> [StatsParam] = { _, _ in [] }
    ) -> Answer {
        guard format == nil || format == "json" || format == "text" else {
            return failure(400, "format must be json or text, got '\(format ?? "")'")
        }
        let enforcing: Bool
        switch enforce {
        case nil, "0", "false": enforcing = false
        case "1", "true": enforcing = true
        default: return failure(400, "enforce must be 1, true, 0 or false, got '\(enforce ?? "")'")
        }
        let selection: GroupSelection
        do {
            selection = try GroupSelection.resolve(
                requested: GroupSelection.names(fromList: groups), supported: supportedGroups, enforce: enforcing, backend: "agent")
        } catch let refused {
            return failure(400, refused.description)
        }
        let wanted = Set(selection.groups)
        var chosen = snapshot
        if !vms.isEmpty {
            chosen = snapshot.filter { vm in vms.contains(vm.name) || vms.contains(vm.uuid) }
            let missing = vms.filter { s in !snapshot.contains { $0.name == s || $0.uuid == s } }
            if !missing.isEmpty {
                return failure(404, "no VM named \(missing.joined(separator: ", ")) on this host")
            }
        }
        let records = chosen.map { vm in
            vm.record(groups: wanted, now: now, extra: wanted.contains(.thin) || wanted.contains(.heartbeat) ? thin(vm.name, vm.uuid) : [])
        }
        var answer: Answer
        if format == "text" {
            answer = Answer(status: 200, contentType: "text/plain; charset=utf-8", body: StatsFormat.text(records))
            let problems = records.flatMap { r in r.errors.map { "\(r.name): \($0)" } }
            if !problems.isEmpty {
                answer.headers["X-VMPulse-Errors"] = JSONText.serialize(.array(problems.map { .string($0) }))
            }
        } else {
            answer = Answer(status: 200, contentType: "application/json", body: StatsFormat.json(records))
        }
        if !selection.leftOut.isEmpty { answer.headers["X-VMPulse-Left-Out"] = selection.leftOut.joined(separator: ",") }
        return answer
    }

    static func failure(_ status: Int, _ message: String) -> Answer {
        Answer(status: status, contentType: "application/json", body: JSONText.serialize(["error": .string(message)]) + "\n")
    }
}
