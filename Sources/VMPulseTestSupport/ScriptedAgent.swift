import Foundation
import Glibc
import VMPulseCore

/// A scripted fake agent, for the engine's bad-input tests only: it answers `POST /rpc`
/// as `script` says for each method, including what no real agent does (garbage, an
/// answer cut off and held open, an error after a hash). One thread per connection, on
/// loopback; `stop` closes the listener and every connection it holds.
public final class ScriptedAgent: @unchecked Sendable {
    // @unchecked: `calls`, `connections` and `script` are guarded by `lock`.
    public enum Reply: Sendable {
        /// A JSON-RPC result.
        case result(JSONValue)
        /// A JSON-RPC error.
        case error(code: Int, message: String)
        /// These bytes as the HTTP body, with status 200.
        case body(String)
        /// Headers for a body of `length` bytes, the first bytes of it, then nothing (held open).
        case hang(length: Int, first: String)
    }

    public let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var script: @Sendable (String) -> Reply
    private var calls: [String] = []
    private var connections: [Int32] = []

    public init(_ script: @escaping @Sendable (String) -> Reply) throws {
        self.script = script
        let (fd, port) = try LoopbackListener.open(backlog: 64)
        self.fd = fd
        self.port = port
        Thread { [self] in
            while true {
                let c = accept(fd, nil, nil)
                guard c >= 0 else { return }
                lock.withLock { connections.append(c) }
                Thread { [self] in serve(c) }.start()
            }
        }.start()
    }

    public var address: String { "127.0.0.1:\(port)" }

    /// The methods called so far, in order.
    public var called: [String] { lock.withLock { calls } }

    public func setScript(_ script: @escaping @Sendable (String) -> Reply) { lock.withLock { self.script = script } }

    /// Serves requests on one connection (keep-alive) until it closes.
    private func serve(_ c: Int32) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            guard let (body, rest) = Self.request(in: buffer) else {
                let n = recv(c, &chunk, chunk.count, 0)
                guard n > 0 else { break }
                buffer += chunk[0..<n]
                continue
            }
            buffer = rest
            let method = (try? JSONParser.parse(body))?["method"]?.stringValue ?? "?"
            let reply: Reply = lock.withLock {
                calls.append(method)
                return script(method)
            }
            let text: String
            switch reply {
            case .result(let r): text = JSONText.serialize(["jsonrpc": "2.0", "id": 1, "result": r])
            case .error(let code, let message):
                text = JSONText.serialize(["jsonrpc": "2.0", "id": 1, "error": ["code": .int(Int64(code)), "message": .string(message)]])
            case .body(let b): text = b
            case .hang(let length, let first):
                send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(length)\r\n\r\n\(first)")
                return  // held open until `stop`
            }
            send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(text.utf8.count)\r\n\r\n\(text)")
        }
        close(c)
        lock.withLock { connections.removeAll { $0 == c } }
    }

    private func send(_ c: Int32, _ text: String) {
        _ = text.withCString { Glibc.send(c, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// A whole request in `buffer` (headers and Content-Length bytes): its body and what follows.
    static func request(in buffer: [UInt8]) -> (body: [UInt8], rest: [UInt8])? {
        let marker: [UInt8] = Array("\r\n\r\n".utf8)
        guard buffer.count >= 4, let end = (0...(buffer.count - 4)).first(where: { Array(buffer[$0..<$0 + 4]) == marker }) else { return nil }
        let head = String(decoding: buffer[0..<end], as: UTF8.self)
        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        let start = end + 4
        guard buffer.count - start >= length else { return nil }
        return (Array(buffer[start..<start + length]), Array(buffer[(start + length)...]))
    }

    private var stopped = false

    public func stop() {
        guard lock.withLock({ () -> Bool in defer { stopped = true }; return !stopped }) else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        for c in lock.withLock({ connections }) { shutdown(c, Int32(SHUT_RDWR)) }
    }

    deinit { stop() }
}
