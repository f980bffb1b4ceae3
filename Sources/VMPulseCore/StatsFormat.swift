/// Renders stats records for people and for programs.
public enum StatsFormat {
    /// The `virsh domstats` text form:
    ///
    ///     Domain: 'vm1'
    ///       state.state=1
    ///
    /// with a blank line after each VM. Names and string values come from the VM (`-name`,
    /// drive ids, paths) and may hold anything: they are escaped (`escaped(_:)`) so that a
    /// name with a newline cannot split one record into two.
    public static func text(_ records: [StatsRecord]) -> String {
        var out = ""
        for record in records {
            out += "Domain: '\(escaped(record.name))'\n"
            for param in record.params {
                if case .string(let s) = param.value {
                    out += "  \(param.key)=\(escaped(s))\n"
                } else {
                    out += "  \(param.key)=\(param.value.text)\n"
                }
            }
            out += "\n"
        }
        return out
    }

    /// Text with a backslash before `\` and `'`, and control characters and line
    /// separators as `\n`, `\r`, `\t` or `\u{HEX}`. Plain names pass unchanged.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "'": out += "\\'"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if needsEscape(scalar) {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    private static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || s.value == 0x7f || (0x80...0x9f).contains(s.value) || s == "\u{2028}" || s == "\u{2029}"
            || s == "\\" || s == "'"
    }

    /// One JSON document: `[{"name", "uuid", "source"?, "statsAge"?, "params": {key: value}, "errors"?: [...]}]`,
    /// keys in collection order, values as JSON numbers, strings and booleans.
    public static func json(_ records: [StatsRecord]) -> String {
        // Written by hand because JSONEncoder cannot keep the keys' order,
        // and the order (block.2 before block.10) is part of the output's meaning.
        var out = "["
        for (i, record) in records.enumerated() {
            out += i == 0 ? "\n" : ",\n"
            out += "  {\"name\": \(JSONText.quoted(record.name)), \"uuid\": \(JSONText.quoted(record.uuid)), "
            if let source = record.source { out += "\"source\": \(JSONText.quoted(source)), " }
            if let age = record.statsAge { out += "\"statsAge\": \(JSONText.value(.double((age * 1000).rounded() / 1000))), " }
            out += "\"params\": {"
            for (j, param) in record.params.enumerated() {
                out += j == 0 ? "\n" : ",\n"
                out += "    \(JSONText.quoted(param.key)): \(JSONText.value(param.value))"
            }
            out += record.params.isEmpty ? "}" : "\n  }"
            if !record.errors.isEmpty {
                out += ", \"errors\": [" + record.errors.map(JSONText.quoted).joined(separator: ", ") + "]"
            }
            out += "}"
        }
        out += records.isEmpty ? "]\n" : "\n]\n"
        return out
    }
}


extension StatsFormat {
    /// Why a stats document could not be read.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Reads back what `json(_:)` writes (the agent's answer), for programs and tests.
    /// Numbers become `int` when they fit, `uint` above, `double` with a fraction.
    /// The order of a record's keys is not kept (a JSON object has none).
    public static func parseJSON(_ bytes: some Collection<UInt8>) throws(ParseError) -> [StatsRecord] {
        let document: JSONValue
        do { document = try JSONParser.parse(bytes) } catch { throw ParseError(message: "not JSON: \(error)") }
        guard let items = document.arrayValue else { throw ParseError(message: "expected an array of records") }
        var records: [StatsRecord] = []
        for (i, item) in items.enumerated() {
            guard let name = item["name"]?.stringValue, let uuid = item["uuid"]?.stringValue, let params = item["params"]?.objectValue else {
                throw ParseError(message: "record \(i) lacks name, uuid or params")
            }
            var record = StatsRecord(name: name, uuid: uuid, source: item["source"]?.stringValue, statsAge: item["statsAge"]?.doubleValue)
            record.errors = item["errors"]?.arrayValue?.compactMap(\.stringValue) ?? []
            for (key, value) in params {
                switch value {
                case .int(let v): record.params.append(StatsParam(key, .int(v)))
                case .uint(let v): record.params.append(StatsParam(key, .uint(v)))
                case .double(let v): record.params.append(StatsParam(key, .double(v)))
                case .string(let v): record.params.append(StatsParam(key, .string(v)))
                case .bool(let v): record.params.append(StatsParam(key, .bool(v)))
                default: throw ParseError(message: "record \(i): '\(key)' is \(value.kindName), not a stats value")
                }
            }
            records.append(record)
        }
        return records
    }
}
