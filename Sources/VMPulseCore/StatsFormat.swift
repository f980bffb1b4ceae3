/// Renders stats records for people and for programs.
public enum StatsFormat {
    /// The `virsh domstats` text form:
    ///
    ///     Domain: 'vm1'
    ///       state.state=1
    ///
    /// with a blank line after each VM.
    public static func text(_ records: [StatsRecord]) -> String {
        var out = ""
        for record in records {
            out += "Domain: '\(record.name)'\n"
            for param in record.params {
                out += "  \(param.key)=\(param.value.text)\n"
            }
            out += "\n"
        }
        return out
    }

    /// One JSON document: `[{"name", "uuid", "params": {key: value}, "errors": [...]}]`,
    /// keys in collection order, values as JSON numbers, strings and booleans.
    public static func json(_ records: [StatsRecord]) -> String {
        // Written by hand because JSONEncoder cannot keep the keys' order,
        // and the order (block.2 before block.10) is part of the output's meaning.
        var out = "["
        for (i, record) in records.enumerated() {
            out += i == 0 ? "\n" : ",\n"
            out += "  {\"name\": \(JSONText.quoted(record.name)), \"uuid\": \(JSONText.quoted(record.uuid)), \"params\": {"
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

