/// One typed statistics value, as libvirt's typed parameters carry them.
///
/// Stats keys are dot-separated strings (`block.0.wr.bytes`); the value keeps
/// its type so that JSON consumers get numbers as numbers and text output can
/// follow `virsh domstats`.
public enum TypedValue: Sendable, Hashable {
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case bool(Bool)

    /// The value as `virsh domstats` prints it (booleans as yes/no, doubles with six decimals).
    public var text: String {
        switch self {
        case .int(let v): return String(v)
        case .uint(let v): return String(v)
        case .double(let v): return DecimalText.sixPlaces(v)
        case .string(let v): return v
        case .bool(let v): return v ? "yes" : "no"
        }
    }

    /// The type's name, as documented in the README's key table.
    public var typeName: String {
        switch self {
        case .int: return "int"
        case .uint: return "uint"
        case .double: return "double"
        case .string: return "string"
        case .bool: return "bool"
        }
    }
}

/// Fixed-point formatting without Foundation's `String(format:)`, which is slow
/// and locale-sensitive; `virsh` prints doubles with `%f`.
enum DecimalText {
    static func sixPlaces(_ value: Double) -> String {
        guard value.isFinite else { return String(value) }
        let negative = value < 0
        let scaled = (abs(value) * 1_000_000).rounded()
        guard scaled < 9.0e18 else { return String(value) }
        let whole = UInt64(scaled) / 1_000_000
        let fraction = UInt64(scaled) % 1_000_000
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        return (negative ? "-" : "") + String(whole) + "." + digits
    }
}

extension TypedValue {
    /// The value as an unsigned integer, when it is a non-negative integer.
    public var uint64: UInt64? {
        switch self {
        case .uint(let v): return v
        case .int(let v): return v >= 0 ? UInt64(v) : nil
        default: return nil
        }
    }

    /// The value as a signed integer, when it is an integer that fits.
    public var int64: Int64? {
        switch self {
        case .int(let v): return v
        case .uint(let v): return v <= UInt64(Int64.max) ? Int64(v) : nil
        default: return nil
        }
    }

    /// The value as a number, when it is one.
    public var number: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .uint(let v): return Double(v)
        case .double(let v): return v
        default: return nil
        }
    }

    /// The value as JSON.
    public var json: JSONValue {
        switch self {
        case .int(let v): return .int(v)
        case .uint(let v): return .uint(v)
        case .double(let v): return .double(v)
        case .string(let v): return .string(v)
        case .bool(let v): return .bool(v)
        }
    }
}
