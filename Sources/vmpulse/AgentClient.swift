import NIOCore
import NIOHTTP1
import NIOPosix

/// A one-request HTTP/1.1 client for the agent on loopback.
///
/// Written on NIOHTTP1 (already a dependency) rather than pulling AsyncHTTPClient,
/// with its TLS stack and minutes of build time, into the command line for one GET.
/// Whatever answers on the agent's port may not be an agent: the whole exchange is
/// bounded by one deadline and the answer by `maxBodyBytes`.
enum AgentClient {
    /// The largest answer read: 64 MiB, some thousands of VMs with every group (a VM's
    /// record is about 10 KiB). Anything longer is not taken for an agent's answer.
    static let maxBodyBytes = 64 << 20

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: String

        /// What answered, for a message: status, content type and server.
        var summary: String {
            var parts = ["HTTP \(status)"]
            parts.append("Content-Type \(headers.first(name: "Content-Type").map { "'\(printable($0))'" } ?? "none")")
            if let server = headers.first(name: "Server") { parts.append("Server '\(printable(server))'") }
            return parts.joined(separator: ", ")
        }
    }

    enum Failure: Error, CustomStringConvertible {
        /// Nothing accepted the connection: no agent runs (the usual case without one).
        case unreachable(String)
        /// Something accepted the connection but did not answer in time.
        case timedOut(seconds: Double)
        case malformed(String)
        case tooLarge

        var description: String {
            switch self {
            case .unreachable(let why): return "the agent does not answer: \(why)"
            case .timedOut(let seconds): return "something accepted the connection but gave no complete answer within \(seconds) s"
            case .malformed(let why): return "the answer is not HTTP: \(why)"
            case .tooLarge: return "the answer is longer than \(maxBodyBytes >> 20) MiB"
            }
        }
    }

    /// GETs `path`; connecting and the whole answer are bounded by `timeout` together.
    static func get(host: String, port: Int, path: String, timeout: Double, token: String? = nil) async throws(Failure) -> Response {
        try await request(.GET, host: host, port: port, path: path, body: nil, timeout: timeout, token: token)
    }

    /// Sends one request (`body` as JSON, when given) with the bearer `token`, when given.
    static func request(_ method: HTTPMethod, host: String, port: Int, path: String, body: String?, timeout: Double,
                        token: String?) async throws(Failure) -> Response {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let deadline = NIODeadline.now() + .milliseconds(Int64(timeout * 1000))
        let promise = loop.makePromise(of: Response.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.milliseconds(Int64(timeout * 1000)))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise, limit: maxBodyBytes))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw .unreachable("\(error)")
        }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        head.headers.add(name: "Connection", value: "close")
        head.headers.add(name: "Accept", value: "application/json, text/plain")
        if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Content-Length", value: String(body.utf8.count))
        }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = loop.scheduleTask(deadline: deadline) {
            promise.fail(Failure.timedOut(seconds: timeout))
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            let response = try await promise.futureResult.get()
            channel.close(promise: nil)
            return response
        } catch let failure as Failure {
            channel.close(promise: nil)
            throw failure
        } catch {
            channel.close(promise: nil)
            throw .malformed("\(error)")
        }
    }

    /// Text from a peer, safe to print on one line: control characters escaped, at most 200 characters.
    static func printable(_ text: some StringProtocol) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(200) {
            if scalar.value < 0x20 || scalar.value == 0x7f || (0x80...0x9f).contains(scalar.value) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return text.unicodeScalars.count > 200 ? out + "..." : out
    }
}

/// Gathers one response and completes the promise at its end (or with the error that
/// stopped it); an answer that declares or sends more than `limit` bytes fails at once.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<AgentClient.Response>
    private let limit: Int
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private var done = false

    init(promise: EventLoopPromise<AgentClient.Response>, limit: Int) {
        self.promise = promise
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            if let declared = h.headers.first(name: "Content-Length"), let length = Int(declared), length > limit {
                fail(context, AgentClient.Failure.tooLarge)
            }
        case .body(var b):
            guard body.readableBytes + b.readableBytes <= limit else {
                fail(context, AgentClient.Failure.tooLarge)
                return
            }
            body.writeBuffer(&b)
        case .end:
            done = true
            guard let head else {
                promise.fail(AgentClient.Failure.malformed("no status line"))
                return
            }
            promise.succeed(.init(status: Int(head.status.code), headers: head.headers, body: String(decoding: body.readableBytesView, as: UTF8.self)))
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        done = true
        body = ByteBuffer()  // let go of what was read
        promise.fail(error)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(AgentClient.Failure.malformed("connection closed before the end of the answer"))
    }
}
