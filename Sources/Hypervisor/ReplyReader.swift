import QMP
import VMPulseCore

/// Reads a QMP reply against the shape QEMU's schema gives it, turning any
/// difference into `QMPError.unexpectedReply` with the path of the bad member.
struct ReplyReader {
    let command: String
    let value: JSONValue
    /// The parent's path, and this value's place in it: the path string is built only
    /// when an error needs it (replies are read every second for every VM).
    private let base: String
    private let index: Int?

    init(command: String, value: JSONValue, path: String = "return") {
        self.command = command
        self.value = value
        self.base = path
        self.index = nil
    }

    private init(command: String, value: JSONValue, base: String, index: Int) {
        self.command = command
        self.value = value
        self.base = base
        self.index = index
    }

    var path: String { index.map { "\(base)[\($0)]" } ?? base }

    private func mismatch(_ at: String, expected: String, got: JSONValue?) -> QMPError {
        .unexpectedReply(command: command, detail: "\(at): expected \(expected), got \(got?.kindName ?? "nothing")")
    }

    func array() throws(QMPError) -> [ReplyReader] {
        guard let items = value.arrayValue else { throw mismatch(path, expected: "an array", got: value) }
        let here = path
        return items.enumerated().map { ReplyReader(command: command, value: $1, base: here, index: $0) }
    }

    func object() throws(QMPError) -> ReplyReader {
        guard value.objectValue != nil else { throw mismatch(path, expected: "an object", got: value) }
        return self
    }

    func member(_ key: String) throws(QMPError) -> ReplyReader {
        guard let member = value[key] else { throw mismatch("\(path).\(key)", expected: "a member", got: nil) }
        return ReplyReader(command: command, value: member, path: "\(path).\(key)")
    }

    func optionalMember(_ key: String) -> ReplyReader? {
        value[key].map { ReplyReader(command: command, value: $0, path: "\(path).\(key)") }
    }

    func uint(_ key: String) throws(QMPError) -> UInt64 {
        guard let v = value[key]?.uint64Value else { throw mismatch("\(path).\(key)", expected: "a non-negative integer", got: value[key]) }
        return v
    }

    func int(_ key: String) throws(QMPError) -> Int64 {
        guard let v = value[key]?.int64Value else { throw mismatch("\(path).\(key)", expected: "an integer", got: value[key]) }
        return v
    }

    /// An optional integer member: absent is nil, present with the wrong type is an error.
    func optionalUInt(_ key: String) throws(QMPError) -> UInt64? {
        guard let member = value[key] else { return nil }
        guard let v = member.uint64Value else { throw mismatch("\(path).\(key)", expected: "a non-negative integer", got: member) }
        return v
    }

    func optionalInt(_ key: String) throws(QMPError) -> Int64? {
        guard let member = value[key] else { return nil }
        guard let v = member.int64Value else { throw mismatch("\(path).\(key)", expected: "an integer", got: member) }
        return v
    }

    func string(_ key: String) throws(QMPError) -> String {
        guard let v = value[key]?.stringValue else { throw mismatch("\(path).\(key)", expected: "a string", got: value[key]) }
        return v
    }

    func optionalString(_ key: String) throws(QMPError) -> String? {
        guard let member = value[key] else { return nil }
        guard let v = member.stringValue else { throw mismatch("\(path).\(key)", expected: "a string", got: member) }
        return v
    }

    func bool(_ key: String) throws(QMPError) -> Bool {
        guard let v = value[key]?.boolValue else { throw mismatch("\(path).\(key)", expected: "a boolean", got: value[key]) }
        return v
    }

    /// An array of non-negative integers (histogram bins), read without a reader per element.
    func uintArray() throws(QMPError) -> [UInt64] {
        guard let items = value.arrayValue else { throw mismatch(path, expected: "an array", got: value) }
        var result: [UInt64] = []
        result.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard let v = item.uint64Value else { throw mismatch("\(path)[\(i)]", expected: "a non-negative integer", got: item) }
            result.append(v)
        }
        return result
    }

    func uintValue() throws(QMPError) -> UInt64 {
        guard let v = value.uint64Value else { throw mismatch(path, expected: "a non-negative integer", got: value) }
        return v
    }

    func stringValue() throws(QMPError) -> String {
        guard let v = value.stringValue else { throw mismatch(path, expected: "a string", got: value) }
        return v
    }
}
