/// JSON text: string quoting, stats values, and whole `JSONValue` documents
/// (QMP commands are written with it).
public enum JSONText {
    /// The compact JSON text of a value (object members sorted, for stable output).
    public static func serialize(_ value: JSONValue) -> String {
        var out = ""
        write(value, to: &out)
        return out
    }

    /// The same text, indented by two spaces per level, for people (`vmpulse rpc`).
    public static func pretty(_ value: JSONValue) -> String {
        var out = ""
        writePretty(value, indent: "", to: &out)
        return out
    }

    private static func writePretty(_ value: JSONValue, indent: String, to out: inout String) {
        let inner = indent + "  "
        switch value {
        case .array(let items) where !items.isEmpty:
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += inner
                writePretty(item, indent: inner, to: &out)
                out += i == items.count - 1 ? "\n" : ",\n"
            }
            out += indent + "]"
        case .object(let members) where !members.isEmpty:
            out += "{\n"
            for (i, key) in members.keys.sorted().enumerated() {
                out += inner + quoted(key) + ": "
                if let member = members[key] { writePretty(member, indent: inner, to: &out) }
                out += i == members.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        default:
            write(value, to: &out)
        }
    }

    private static func write(_ value: JSONValue, to out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let v): out += v ? "true" : "false"
        case .int(let v): out += String(v)
        case .uint(let v): out += String(v)
        case .double(let v): out += v.isFinite ? String(v) : "null"
        case .string(let v): out += quoted(v)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                write(item, to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, key) in members.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                out += quoted(key) + ":"
                if let member = members[key] { write(member, to: &out) }
            }
            out += "}"
        }
    }

    public static func value(_ value: TypedValue) -> String {
        switch value {
        case .int(let v): return String(v)
        case .uint(let v): return String(v)
        case .double(let v): return v.isFinite ? String(v) : "null"
        case .string(let v): return quoted(v)
        case .bool(let v): return v ? "true" : "false"
        }
    }

    public static func quoted(_ s: String) -> String {
        // Most keys and values need no escaping: copy them whole.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            return "\"" + s + "\""
        }
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
