import VMPulseCore

/// A method's parameters, by name or by position, checked against what the method takes:
/// an unknown name, too many positions or a value of the wrong type is -32602.
struct RPCParams {
    private var values: [String: JSONValue] = [:]

    init(_ params: JSONValue?, method: String, names: [String]) throws(RPCError) {
        switch params {
        case nil, .null?:
            break
        case .array(let items)?:
            guard items.count <= names.count else {
                throw RPCError(RPCError.invalidParams, "\(method) takes at most \(names.count) parameter(s) (\(names.joined(separator: ", "))), got \(items.count)")
            }
            for (name, item) in zip(names, items) { values[name] = item }
        case .object(let o)?:
            let unknown = o.keys.filter { !names.contains($0) }.sorted()
            guard unknown.isEmpty else {
                let takes = names.isEmpty ? "no parameters" : names.joined(separator: ", ")
                throw RPCError(RPCError.invalidParams, "\(method) has no parameter \(unknown.joined(separator: ", ")) (it takes \(takes))")
            }
            values = o
        case let other?:
            throw RPCError(RPCError.invalidParams, "params must be an array or an object, got \(other.kindName)")
        }
    }

    /// A list of strings; nil when absent or null.
    func strings(_ name: String, limit: Int = 100_000) throws(RPCError) -> [String]? {
        guard let value = values[name], value != .null else { return nil }
        guard case .array(let items) = value else {
            throw RPCError(RPCError.invalidParams, "\(name) must be an array of strings, got \(value.kindName)")
        }
        guard items.count <= limit else {
            throw RPCError(RPCError.invalidParams, "\(name) holds \(items.count) items, over the limit of \(limit)")
        }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard let s = item.stringValue else {
                throw RPCError(RPCError.invalidParams, "\(name)[\(i)] must be a string, got \(item.kindName)")
            }
            out.append(s)
        }
        return out
    }

    func bool(_ name: String) throws(RPCError) -> Bool? {
        guard let value = values[name], value != .null else { return nil }
        guard let b = value.boolValue, case .bool = value else {
            throw RPCError(RPCError.invalidParams, "\(name) must be true or false, got \(value.kindName)")
        }
        return b
    }

    /// A whole number within `range`; nil when absent or null.
    func integer(_ name: String, in range: ClosedRange<Int64>) throws(RPCError) -> Int64? {
        guard let value = values[name], value != .null else { return nil }
        guard let v = value.int64Value, range.contains(v) else {
            throw RPCError(RPCError.invalidParams, "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound), got \(JSONText.serialize(value).prefix(40))")
        }
        return v
    }

    func required<T>(_ name: String, _ value: T?) throws(RPCError) -> T {
        guard let value else { throw RPCError(RPCError.invalidParams, "\(name) is required") }
        return value
    }
}
