import Glibc
import NIOCore
import NIOPosix
import VMPulseCore

/// A client of QEMU's guest agent (qemu-ga) through the host side of its virtio-serial
/// port (a `-chardev socket`). The protocol is QMP's JSON lines without a greeting or
/// ids, so calls go one at a time; after a call that timed out (its reply may still
/// come) the next one first resynchronises with `guest-sync-delimited`, dropping stale
/// replies. Everything the guest sends is untrusted: lines are bounded, and what is not
/// a reply is skipped.
public final class GuestAgentClient: Sendable {
    public let socketPath: String
    private let channel: any Channel
    private let handler: NIOLoopBound<GuestAgentHandler>

    private init(socketPath: String, channel: any Channel, handler: NIOLoopBound<GuestAgentHandler>) {
        self.socketPath = socketPath
        self.channel = channel
        self.handler = handler
    }

    /// Connects to the port's socket (nothing is exchanged until the first call).
    public static func connect(socketPath: String, timeout: Duration, maxLineBytes: Int = 1 << 20,
                               group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws(QMPError) -> GuestAgentClient {
        let loop = group.next()
        let handlerPromise = loop.makePromise(of: NIOLoopBound<GuestAgentHandler>.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(TimeAmount(timeout))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = GuestAgentHandler()
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(QMPLineDecoder(maxLength: maxLineBytes)))
                        try channel.pipeline.syncOperations.addHandler(handler)
                        handlerPromise.succeed(NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    }
                }
                .connect(unixDomainSocketPath: socketPath)
                .get()
        } catch {
            handlerPromise.fail(QMPError.connectFailed(path: socketPath, reason: "\(error)"))
            if let io = error as? IOError, io.errnoCode == ECONNREFUSED || io.errnoCode == ENOENT { throw .noListener(path: socketPath) }
            throw .connectFailed(path: socketPath, reason: "\(error)")
        }
        do {
            return GuestAgentClient(socketPath: socketPath, channel: channel, handler: try await handlerPromise.futureResult.get())
        } catch {
            channel.close(promise: nil)
            throw .connectionClosed(detail: "the connection ended during set-up: \(error)")
        }
    }

    public func close() async {
        try? await channel.close()
    }

    /// Runs one command; returns its `return` member. Resynchronises first when an earlier
    /// call timed out. Not for concurrent use: the caller runs one call at a time.
    public func execute(_ command: String, arguments: [String: JSONValue]? = nil, timeout: Duration) async throws(QMPError) -> JSONValue {
        if await onLoop(true, { $0.needsSync }) { try await sync(timeout: timeout) }
        var request: [String: JSONValue] = ["execute": .string(command)]
        if let arguments { request["arguments"] = .object(arguments) }
        await onLoop((), { $0.dropBuffered() })
        send(request, resetParser: false)
        let reply = try await next(command, timeout: timeout)
        if let error = reply["error"] {
            throw .commandFailed(command: command, errorClass: error["class"]?.stringValue ?? "?", description: error["desc"]?.stringValue ?? "")
        }
        guard let value = reply["return"] else { throw .unexpectedReply(command: command, detail: "no return member") }
        return value
    }

    /// `guest-sync-delimited` with a fresh id, skipping every reply until the one that
    /// returns it (at most 16: a guest that answers with anything else is not in sync).
    func sync(timeout: Duration) async throws(QMPError) {
        let id = Int64.random(in: 1...Int64(Int32.max))
        await onLoop((), { $0.dropBuffered() })
        send(["execute": "guest-sync-delimited", "arguments": ["id": .int(id)]], resetParser: true)
        for _ in 0..<16 {
            let reply = try await next("guest-sync-delimited", timeout: timeout)
            if reply["return"]?.int64Value == id {
                await onLoop((), { $0.needsSync = false })
                return
            }
        }
        throw .unexpectedReply(command: "guest-sync-delimited", detail: "16 replies, none with the id sent")
    }

    private func send(_ request: [String: JSONValue], resetParser: Bool) {
        // A 0xFF byte before guest-sync-delimited makes the guest agent's parser drop any
        // partial input (it answers it with a parse error, which the sync skips).
        var buffer = channel.allocator.buffer(capacity: 256)
        if resetParser { buffer.writeInteger(UInt8(0xFF)) }
        buffer.writeString(JSONText.serialize(.object(request)) + "\n")
        channel.writeAndFlush(buffer, promise: nil)
    }

    private func next(_ command: String, timeout: Duration) async throws(QMPError) -> JSONValue {
        let promise = channel.eventLoop.makePromise(of: JSONValue.self)
        let handler = self.handler
        channel.eventLoop.execute { handler.value.wait(promise, command: command, timeout: TimeAmount(timeout)) }
        do {
            return try await promise.futureResult.get()
        } catch {
            throw (error as? QMPError) ?? .connectionClosed(detail: "\(error)")
        }
    }

    /// Runs `body` on the handler's event loop; `fallback` when the loop is gone.
    private func onLoop<T: Sendable>(_ fallback: T, _ body: @escaping @Sendable (GuestAgentHandler) -> T) async -> T {
        let handler = self.handler
        return (try? await channel.eventLoop.submit { body(handler.value) }.get()) ?? fallback
    }
}

/// The event-loop side: replies in arrival order, one waiter at a time, and the timeout.
final class GuestAgentHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var buffered: [JSONValue] = []
    private var waiter: (promise: EventLoopPromise<JSONValue>, timer: Scheduled<Void>?)?
    private var ended = false
    /// An earlier call timed out: its reply may still come.
    var needsSync = false

    func dropBuffered() { buffered.removeAll() }

    func wait(_ promise: EventLoopPromise<JSONValue>, command: String, timeout: TimeAmount) {
        if ended { return promise.fail(QMPError.connectionClosed(detail: "the guest agent's socket closed")) }
        if !buffered.isEmpty { return promise.succeed(buffered.removeFirst()) }
        guard waiter == nil else { return promise.fail(QMPError.unexpectedMessage("two guest agent calls at once")) }
        let timer = promise.futureResult.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, let w = self.waiter else { return }
            self.waiter = nil
            self.needsSync = true
            w.promise.fail(QMPError.timedOut(command: command, after: .nanoseconds(timeout.nanoseconds)))
        }
        waiter = (promise, timer)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var line = unwrapInboundIn(data)
        // guest-sync-delimited's reply comes after a 0xFF byte.
        while line.readableBytesView.first == 0xFF { line.moveReaderIndex(forwardBy: 1) }
        guard let value = try? JSONParser.parse(line.readableBytesView), value["return"] != nil || value["error"] != nil else { return }
        if let w = waiter {
            waiter = nil
            w.timer?.cancel()
            w.promise.succeed(value)
        } else if buffered.count < 16 {
            buffered.append(value)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(QMPError.connectionClosed(detail: "the guest agent's socket closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        end((error as? QMPError) ?? .connectionClosed(detail: "\(error)"))
        context.close(promise: nil)
    }

    private func end(_ error: QMPError) {
        ended = true
        if let w = waiter {
            waiter = nil
            w.timer?.cancel()
            w.promise.fail(error)
        }
    }
}
