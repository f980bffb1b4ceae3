import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import VMPulseCore

/// Why a call to an agent did not give a result. Each names the host and what to check.
public enum AgentCallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing answered: the connection was refused or could not be made.
    case unreachable(host: String, why: String)
    /// Something answered but gave no complete answer within the timeout.
    case timedOut(host: String, method: String, seconds: Double)
    /// The answer is not a JSON-RPC answer of an agent (garbage, HTML, too large).
    case badAnswer(host: String, method: String, why: String)
    /// The agent answered with a JSON-RPC error.
    case rpc(host: String, method: String, code: Int64, message: String)

    public var description: String {
        switch self {
        case .unreachable(let h, let why): return "agent \(h) does not answer: \(why)"
        case .timedOut(let h, let m, let s): return "agent \(h) gave no complete answer to \(m) within \(s) s"
        case .badAnswer(let h, let m, let why): return "agent \(h) answered \(m) with something that is not a vmpulse answer: \(why)"
        case .rpc(let h, let m, let code, let message): return "agent \(h) refused \(m): \(message) (code \(code))"
        }
    }
}

/// JSON-RPC 2.0 calls to one agent's `POST /rpc`, over AsyncHTTPClient (shared client,
/// pooled connections). Each call is bounded by one deadline and its answer by
/// `maxAnswerBytes`; the bytes sent and received are counted for the wire benchmark.
public struct AgentRPC: Sendable {
    public let endpoint: AgentEndpoint
    let client: HTTPClient
    let token: String?
    let timeout: Double
    let url: String

    /// 64 MiB, as the agent's own limit on an answer.
    public static let maxAnswerBytes = 64 << 20

    public init(endpoint: AgentEndpoint, client: HTTPClient, token: String?, timeout: Double) {
        self.endpoint = endpoint
        self.client = client
        self.token = token
        self.timeout = timeout
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        url = "http://\(host):\(endpoint.port)/rpc"
    }

    /// The result of `method`, and the bytes the exchange took (request and answer bodies).
    public func call(_ method: String, _ params: JSONValue? = nil) async throws(AgentCallError) -> (result: JSONValue, bytes: Int) {
        var body: [String: JSONValue] = ["jsonrpc": "2.0", "id": 1, "method": .string(method)]
        if let params { body["params"] = params }
        let text = JSONText.serialize(.object(body))
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.body = .bytes(ByteBuffer(string: text))
        let name = endpoint.name
        let answer: ByteBuffer
        let status: UInt
        do {
            (status, answer) = try await Self.exchange(client, request, timeout: timeout)
        } catch is Deadline {
            throw .timedOut(host: name, method: method, seconds: timeout)
        } catch let e as HTTPClientError where e == .deadlineExceeded || e == .readTimeout || e == .connectTimeout {
            throw .timedOut(host: name, method: method, seconds: timeout)
        } catch let e as NIOTooManyBytesError {
            throw .badAnswer(host: name, method: method, why: "longer than \(Self.maxAnswerBytes >> 20) MiB (\(e))")
        } catch {
            if "\(error)".contains("connectTimeout") || "\(error)".contains("deadlineExceeded") {
                throw .timedOut(host: name, method: method, seconds: timeout)
            }
            throw .unreachable(host: name, why: Self.describe(error))
        }
        let bytes = text.utf8.count + answer.readableBytes
        guard let reply = try? JSONParser.parse(Array(answer.readableBytesView)), case .object(let o) = reply else {
            throw .badAnswer(host: name, method: method, why: "HTTP \(status), \(answer.readableBytes) bytes that are not a JSON object")
        }
        if let error = o["error"] {
            throw .rpc(host: name, method: method, code: error["code"]?.int64Value ?? 0,
                       message: String((error["message"]?.stringValue ?? JSONText.serialize(error)).prefix(500)))
        }
        guard let result = o["result"] else { throw .badAnswer(host: name, method: method, why: "HTTP \(status), a JSON object without result or error") }
        return (result, bytes)
    }

    struct Deadline: Error {}

    /// The request and its whole answer within `timeout`. AsyncHTTPClient's deadline covers
    /// the request up to the answer's head; a peer that sends a head and then holds the body
    /// (EngineBadAgentTests) would hold the poller for ever, so the body is raced against
    /// the same deadline here, and cancelled (closing the connection) when it loses.
    static func exchange(_ client: HTTPClient, _ request: HTTPClientRequest, timeout: Double) async throws -> (UInt, ByteBuffer) {
        let limit = Duration.milliseconds(Int64(timeout * 1000))
        return try await withThrowingTaskGroup(of: (UInt, ByteBuffer)?.self) { group in
            group.addTask {
                let response = try await client.execute(request, deadline: .now() + .milliseconds(Int64(timeout * 1000)))
                return (response.status.code, try await response.body.collect(upTo: maxAnswerBytes))
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let answer = first else { throw Deadline() }
            return answer
        }
    }

    static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        return String(text.prefix(300))
    }
}
