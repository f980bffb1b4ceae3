import VMPulseCore

/// A JSON-RPC 2.0 error object. Codes -32700..-32600 are the specification's; vmpulse's own
/// are in the range it leaves to servers (-32000 and below -32000 down to -32099).
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSONValue?

    public init(_ code: Int, _ message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public var description: String { "\(code): \(message)" }

    public static let parseError = -32700
    public static let invalidRequest = -32600
    public static let methodNotFound = -32601
    public static let invalidParams = -32602
    /// No VM with this id runs on the host (per VM, inside a result).
    public static let unknownVM = -32001
    /// Two running VMs claim this UUID; the API names neither one (see `/v1/health`).
    public static let ambiguousVM = -32002
    /// `enforce` refused a group this host cannot give.
    public static let unsupportedGroup = -32003
    /// `subscribe` over HTTP, or past the subscriber limit.
    public static let subscriptionRefused = -32004
    /// `Host.getBillingRecords` could not read the ledger (missing, damaged, a row it cannot take).
    public static let ledgerUnavailable = -32006

    public var json: JSONValue {
        var o: [String: JSONValue] = ["code": .int(Int64(code)), "message": .string(message)]
        if let data { o["data"] = data }
        return .object(o)
    }
}

/// One call, read from a request object.
public struct RPCCall: Sendable, Equatable {
    public var method: String
    /// Absent, an array (by position) or an object (by name).
    public var params: JSONValue?
    /// Nil for a notification (no `id` member): it gets no answer.
    public var id: JSONValue?
}

/// The framing of JSON-RPC 2.0 (https://www.jsonrpc.org/specification): a single call or
/// a batch in, the answers out. The methods themselves are a closure, so this part knows
/// nothing of VMs and is tested on its own.
public enum JSONRPC {
    /// The most bytes of answer one request (a batch) builds: 64 MiB, some hundreds of
    /// `Host.getAllDomainStats` of 100 VMs (200 KiB each). A batch whose answers pass it
    /// gets, for each call from there on, an error instead (its calls are not run).
    public static let maxResponseBytes = 64 << 20
    /// The error for a call whose answer would pass `maxResponseBytes`.
    public static let responseTooLarge = -32005

    /// Reads one request document and answers it, as JSON text. Returns nil when nothing
    /// is to be sent back (only notifications). A batch over `maxBatch` calls is refused
    /// as a whole.
    public static func reply(
        _ body: some Collection<UInt8>, maxBatch: Int, maxResponseBytes: Int = maxResponseBytes,
        call: (RPCCall) -> Result<JSONValue, RPCError>
    ) -> String? {
        let document: JSONValue
        do throws(JSONParseError) {
            document = try JSONParser.parse(body)
        } catch {
            return JSONText.serialize(failure(nil, RPCError(RPCError.parseError, "the request is not JSON: \(error)")))
        }
        guard case .array(let items) = document else {
            guard let answer = answer(item: document, call: call) else { return nil }
            let text = JSONText.serialize(answer)
            return text.utf8.count <= maxResponseBytes ? text : JSONText.serialize(failure(answer["id"], tooLarge(maxResponseBytes)))
        }
        guard !items.isEmpty else {
            return JSONText.serialize(failure(nil, RPCError(RPCError.invalidRequest, "an empty batch is not a request")))
        }
        guard items.count <= maxBatch else {
            return JSONText.serialize(failure(nil, RPCError(RPCError.invalidRequest, "a batch of \(items.count) calls is over the limit of \(maxBatch) (api.max_batch)")))
        }
        var parts: [String] = []
        var size = 2
        var full = false
        for item in items {
            let text: String
            if full {
                // Not run: only its id is read, for the error.
                guard case .success(let c) = request(item), let id = c.id else { continue }
                text = JSONText.serialize(failure(id, tooLarge(maxResponseBytes)))
            } else {
                guard let answer = answer(item: item, call: call) else { continue }
                let whole = JSONText.serialize(answer)
                if size + whole.utf8.count + 1 > maxResponseBytes {
                    full = true
                    text = JSONText.serialize(failure(answer["id"], tooLarge(maxResponseBytes)))
                } else {
                    text = whole
                }
            }
            size += text.utf8.count + 1
            parts.append(text)
        }
        return parts.isEmpty ? nil : "[" + parts.joined(separator: ",") + "]"
    }

    static func tooLarge(_ limit: Int) -> RPCError {
        RPCError(responseTooLarge, "the answer would be over \(limit >> 20) MiB; ask for fewer calls or fewer VMs per request")
    }

    /// The answer to one element: a response, an error response, or nil for a notification.
    static func answer(item: JSONValue, call: (RPCCall) -> Result<JSONValue, RPCError>) -> JSONValue? {
        let parsed: RPCCall
        switch request(item) {
        case .failure(let error): return failure(validID(item["id"]) ?? nil, error)
        case .success(let c): parsed = c
        }
        let result = call(parsed)
        guard let id = parsed.id else { return nil }
        switch result {
        case .success(let value): return .object(["jsonrpc": "2.0", "id": id, "result": value])
        case .failure(let error): return failure(id, error)
        }
    }

    /// The call in a request object, or why it is not one.
    public static func request(_ item: JSONValue) -> Result<RPCCall, RPCError> {
        guard case .object(let o) = item else {
            return .failure(RPCError(RPCError.invalidRequest, "a request is an object, got \(item.kindName)"))
        }
        guard o["jsonrpc"] == .string("2.0") else {
            return .failure(RPCError(RPCError.invalidRequest, "a request needs \"jsonrpc\": \"2.0\""))
        }
        guard let method = o["method"]?.stringValue else {
            return .failure(RPCError(RPCError.invalidRequest, "a request needs a \"method\" string"))
        }
        let id: JSONValue?
        if let given = o["id"] {
            guard let valid = validID(given) else {
                return .failure(RPCError(RPCError.invalidRequest, "\"id\" must be a string, a number or null, got \(given.kindName)"))
            }
            id = valid ?? .null
        } else {
            id = nil
        }
        let params = o["params"]
        if let params {
            switch params {
            case .array, .object: break
            default:
                return .failure(RPCError(RPCError.invalidRequest, "\"params\" must be an array or an object, got \(params.kindName)"))
            }
        }
        let unknown = o.keys.filter { !["jsonrpc", "method", "params", "id"].contains($0) }.sorted()
        guard unknown.isEmpty else {
            return .failure(RPCError(RPCError.invalidRequest, "a request has no member \(unknown.joined(separator: ", "))"))
        }
        return .success(RPCCall(method: method, params: params, id: id))
    }

    /// The id when it is a valid one (`.some(nil)` for JSON null), nil when it is not.
    static func validID(_ value: JSONValue?) -> JSONValue?? {
        switch value {
        case nil: return .some(nil)
        case .null: return .some(.null)
        case .string, .int, .uint, .double: return .some(value)
        default: return nil
        }
    }

    public static func failure(_ id: JSONValue?, _ error: RPCError) -> JSONValue {
        .object(["jsonrpc": "2.0", "id": id ?? .null, "error": error.json])
    }

    /// A server-pushed notification.
    public static func notification(method: String, params: JSONValue) -> JSONValue {
        .object(["jsonrpc": "2.0", "method": .string(method), "params": params])
    }
}
