import NIOCore
import NIOHTTP1
import NIOPosix

/// A one-request HTTP/1.1 client for the agent on loopback.
///
/// Written on NIOHTTP1 (already a dependency) rather than pulling AsyncHTTPClient,
/// with its TLS stack and minutes of build time, into the command line for one GET.
enum AgentClient {
    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: String
    }

    enum Failure: Error, CustomStringConvertible {
        case unreachable(String)
        case timedOut
        case malformed(String)

        var description: String {
            switch self {
            case .unreachable(let why): return "the agent does not answer: \(why)"
            case .timedOut: return "the agent did not answer in time"
            case .malformed(let why): return "the agent's answer is not HTTP: \(why)"
            }
        }
    }

    static func get(host: String, port: Int, path: String, timeout: TimeAmount) async throws(Failure) -> Response {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let promise = loop.makePromise(of: Response.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw .unreachable("\(error)")
        }
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        head.headers.add(name: "Connection", value: "close")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(Failure.timedOut)
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            let response = try await promise.futureResult.get()
            channel.close(promise: nil)
            return response
        } catch let failure as Failure {
            throw failure
        } catch {
            throw .malformed("\(error)")
        }
    }
}

/// Gathers one response and completes the promise at its end (or with the error that stopped it).
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<AgentClient.Response>
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<AgentClient.Response>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body(var b): body.writeBuffer(&b)
        case .end:
            guard let head else {
                promise.fail(AgentClient.Failure.malformed("no status line"))
                return
            }
            promise.succeed(.init(status: Int(head.status.code), headers: head.headers, body: String(buffer: body)))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(AgentClient.Failure.malformed("connection closed before the end of the answer"))
    }
}
