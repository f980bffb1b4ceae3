import VMPulseCore

/// QEMU's greeting, the first message on a monitor connection.
public struct QMPGreeting: Sendable, Equatable {
    public var major: Int
    public var minor: Int
    public var micro: Int
    public var package: String
    public var capabilities: [String]

    public var versionString: String { "\(major).\(minor).\(micro)" }
}

/// An asynchronous event from QEMU (`BLOCK_WRITE_THRESHOLD`, `STOP`, ...).
public struct QMPEvent: Sendable, Equatable {
    public var name: String
    public var data: JSONValue
    /// QEMU's timestamp, in microseconds since the epoch (host clock), when given.
    public var timestampMicroseconds: Int64?
}

/// What one line from the monitor is (`package` for the fuzz target, Fuzz/FuzzQMP).
package enum QMPMessage: Equatable {
    case greeting(QMPGreeting)
    case reply(id: JSONValue?, result: JSONValue)
    case error(id: JSONValue?, errorClass: String, description: String)
    case event(QMPEvent)

    /// Classifies a parsed line; anything that is not one of the four message kinds is malformed.
    package static func classify(_ value: JSONValue, excerpt: @autoclosure () -> String) throws(QMPError) -> QMPMessage {
        guard case .object(let members) = value else {
            throw .malformedMessage(reason: "expected a JSON object, got \(value.kindName)", excerpt: excerpt())
        }
        if let qmp = members["QMP"] {
            return .greeting(try greeting(qmp, excerpt: excerpt()))
        }
        if let result = members["return"] {
            return .reply(id: members["id"], result: result)
        }
        if let error = members["error"] {
            guard let errorClass = error["class"]?.stringValue, let desc = error["desc"]?.stringValue else {
                throw .malformedMessage(reason: "an error reply needs 'class' and 'desc' strings", excerpt: excerpt())
            }
            return .error(id: members["id"], errorClass: errorClass, description: desc)
        }
        if let name = members["event"] {
            guard let name = name.stringValue else {
                throw .malformedMessage(reason: "an event name must be a string", excerpt: excerpt())
            }
            // Checked: a peer's timestamp near 2^63 must not wrap round to another time.
            var micros: Int64?
            if let ts = members["timestamp"], let s = ts["seconds"]?.int64Value, let us = ts["microseconds"]?.int64Value {
                let (scaled, o1) = s.multipliedReportingOverflow(by: 1_000_000)
                let (sum, o2) = scaled.addingReportingOverflow(us)
                micros = o1 || o2 ? nil : sum
            }
            return .event(QMPEvent(name: name, data: members["data"] ?? .object([:]), timestampMicroseconds: micros))
        }
        throw .malformedMessage(reason: "a JSON object that is neither a reply, an error, an event nor a greeting", excerpt: excerpt())
    }

    private static func greeting(_ qmp: JSONValue, excerpt: @autoclosure () -> String) throws(QMPError) -> QMPGreeting {
        let version = qmp["version"]
        let qemu = version?["qemu"]
        guard let major = qemu?["major"]?.int64Value, let minor = qemu?["minor"]?.int64Value,
              let micro = qemu?["micro"]?.int64Value
        else {
            throw .notQMP(detail: "greeting without version.qemu.{major,minor,micro}: \(excerpt())")
        }
        let caps = qmp["capabilities"]?.arrayValue?.compactMap(\.stringValue) ?? []
        return QMPGreeting(
            major: Int(clamping: major), minor: Int(clamping: minor), micro: Int(clamping: micro),
            package: version?["package"]?.stringValue ?? "", capabilities: caps)
    }
}

/// The first bytes of a message, printable, for error messages and logs.
package func excerpt(of bytes: some Collection<UInt8>, limit: Int = 120) -> String {
    var text = String(decoding: bytes.prefix(limit), as: UTF8.self)
    text = String(text.unicodeScalars.map { $0.value < 0x20 ? "." : Character($0) })
    return bytes.count > limit ? text + "... (\(bytes.count) bytes)" : text
}
