import Glibc
import NIOCore
import NIOPosix
import Synchronization
import VMPulseCore

/// Settings of one monitor connection.
public struct QMPClientOptions: Sendable {
    /// How long to wait for the socket to connect and QEMU's greeting to arrive.
    public var connectTimeout: Duration = .seconds(2)
    /// The default deadline of each command.
    public var commandTimeout: Duration = .seconds(2)
    /// The longest line accepted from the peer; a longer one closes the connection.
    /// libvirt allows 10 MiB; 4 MiB holds the largest replies of hosts with hundreds of block nodes.
    public var maxMessageBytes: Int = 4 * 1024 * 1024
    /// Events kept for a consumer that is not reading; the oldest are dropped beyond this.
    public var eventBufferSize: Int = 1024

    public init() {}
}

/// A client of one QEMU monitor socket (QMP).
///
/// Connects, reads the greeting, negotiates capabilities (asking for `oob` only
/// when QEMU offers it), and then runs any number of commands at once, each
/// correlated by its `id` and bounded by its own timeout. Asynchronous events
/// arrive on `events`. Every failure is a `QMPError`.
public final class QMPClient: Sendable {
    public let socketPath: String
    public let greeting: QMPGreeting
    /// QEMU's process id, from the socket's peer credentials (SO_PEERCRED).
    public let peerPID: Int32?
    /// QEMU's asynchronous events, in arrival order. Ends when the connection ends.
    public let events: AsyncStream<QMPEvent>
    public let defaultTimeout: Duration

    private let channel: any Channel
    private let handler: NIOLoopBound<QMPChannelHandler>
    private let nextID = Atomic<UInt64>(1)

    private init(
        socketPath: String, greeting: QMPGreeting, peerPID: Int32?, events: AsyncStream<QMPEvent>,
        channel: any Channel, handler: NIOLoopBound<QMPChannelHandler>, defaultTimeout: Duration
    ) {
        self.socketPath = socketPath
        self.greeting = greeting
        self.peerPID = peerPID
        self.events = events
        self.channel = channel
        self.handler = handler
        self.defaultTimeout = defaultTimeout
    }

    /// Connects to a monitor socket and completes the QMP handshake.
    public static func connect(
        socketPath: String, options: QMPClientOptions = QMPClientOptions(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(QMPError) -> QMPClient {
        let loop = group.next()
        let greetingPromise = loop.makePromise(of: QMPGreeting.self)
        let (events, continuation) = AsyncStream<QMPEvent>.makeStream(bufferingPolicy: .bufferingNewest(options.eventBufferSize))
        let maxBytes = options.maxMessageBytes
        let greetingTimeout = TimeAmount(options.connectTimeout)

        // The handler is handed out by the initializer itself: looking it up in the pipeline
        // after connecting would race with a peer that sends garbage and is closed at once.
        let handlerPromise = loop.makePromise(of: NIOLoopBound<QMPChannelHandler>.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(greetingTimeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = QMPChannelHandler(greetingPromise: greetingPromise, greetingTimeout: greetingTimeout, events: continuation)
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(QMPLineDecoder(maxLength: maxBytes)))
                        try channel.pipeline.syncOperations.addHandler(handler)
                        handlerPromise.succeed(NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    }
                }
                .connect(unixDomainSocketPath: socketPath)
                .get()
        } catch {
            greetingPromise.fail(QMPError.connectFailed(path: socketPath, reason: "\(error)"))
            handlerPromise.fail(QMPError.connectFailed(path: socketPath, reason: "\(error)"))
            continuation.finish()
            if let io = error as? IOError, io.errnoCode == ECONNREFUSED || io.errnoCode == ENOENT {
                throw .noListener(path: socketPath)
            }
            throw .connectFailed(path: socketPath, reason: Self.reason(error))
        }

        let handler: NIOLoopBound<QMPChannelHandler>
        do {
            handler = try await handlerPromise.futureResult.get()
        } catch {
            channel.close(promise: nil)
            throw .connectionClosed(detail: "the connection ended during set-up: \(error)")
        }

        let greeting: QMPGreeting
        do {
            greeting = try await withTaskCancellationHandler {
                try await greetingPromise.futureResult.get()
            } onCancel: {
                channel.eventLoop.execute { handler.value.terminate(.cancelled) }
            }
        } catch {
            channel.close(promise: nil)
            throw (error as? QMPError) ?? .connectionClosed(detail: "\(error)")
        }

        let client = QMPClient(
            socketPath: socketPath, greeting: greeting, peerPID: await Self.peerPID(of: channel), events: events,
            channel: channel, handler: handler, defaultTimeout: options.commandTimeout)
        do {
            var arguments: [String: JSONValue]?
            if greeting.capabilities.contains("oob") { arguments = ["enable": ["oob"]] }
            _ = try await client.execute("qmp_capabilities", arguments: arguments, timeout: options.connectTimeout)
        } catch {
            await client.close()
            throw error
        }
        return client
    }

    /// Runs one command and returns the `return` member of its reply.
    /// - Throws: `QMPError.commandFailed` for an error reply, `.timedOut` after `timeout`
    ///   (default: the client's), `.cancelled` if the task is cancelled, and the
    ///   connection's error if it breaks.
    public func execute(_ command: String, arguments: [String: JSONValue]? = nil, timeout: Duration? = nil) async throws(QMPError) -> JSONValue {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: JSONValue.self)
        let handler = self.handler
        let deadline = TimeAmount(timeout ?? defaultTimeout)
        loop.execute {
            handler.value.submit(id: id, command: command, arguments: arguments, timeout: deadline, promise: promise)
        }
        do {
            return try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                loop.execute { handler.value.expire(id: id, error: .cancelled) }
            }
        } catch {
            throw (error as? QMPError) ?? .connectionClosed(detail: "\(error)")
        }
    }

    /// Runs several commands at once, written to the monitor in one go; returns each
    /// command's outcome in the order given. QEMU answers them in order, so this
    /// costs one round trip and one write however many commands there are.
    public func executeAll(_ commands: [(command: String, arguments: [String: JSONValue]?)], timeout: Duration? = nil) async -> [Result<JSONValue, QMPError>] {
        let loop = channel.eventLoop
        let handler = self.handler
        let deadline = TimeAmount(timeout ?? defaultTimeout)
        let ids = commands.map { _ in nextID.wrappingAdd(1, ordering: .relaxed).oldValue }
        let promises = commands.map { _ in loop.makePromise(of: JSONValue.self) }
        loop.execute {
            for (i, c) in commands.enumerated() {
                handler.value.submit(id: ids[i], command: c.command, arguments: c.arguments, timeout: deadline, promise: promises[i], flush: false)
            }
            handler.value.flush()
        }
        // One wait for the whole batch: a resume per reply would cost a thread hop each.
        let all = EventLoopFuture.whenAllComplete(promises.map(\.futureResult), on: loop)
        return await withTaskCancellationHandler {
            let results = (try? await all.get()) ?? []
            return results.map { result in
                result.mapError { ($0 as? QMPError) ?? .connectionClosed(detail: "\($0)") }
            }
        } onCancel: {
            loop.execute { for id in ids { handler.value.expire(id: id, error: .cancelled) } }
        }
    }

    /// Closes the connection; commands still waiting fail with `.connectionClosed`.
    public func close() async {
        let handler = self.handler
        try? await channel.eventLoop.submit {
            handler.value.terminate(.connectionClosed(detail: "closed by vmpulse"))
        }.get()
        try? await channel.closeFuture.get()
    }

    /// Whether the connection is still usable.
    public var isActive: Bool { channel.isActive }

    private static func peerPID(of channel: any Channel) async -> Int32? {
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET), name: NIOBSDSocket.Option(rawValue: SO_PEERCRED))
        guard let cred = try? await future.get(), cred.pid > 0 else { return nil }
        return cred.pid
    }

    private static func reason(_ error: any Error) -> String {
        if let io = error as? IOError { return "\(io.description)" }
        return "\(error)"
    }
}

/// Linux's `struct ucred` (pid, uid, gid), which Swift's Glibc module does not
/// export because glibc declares it only under _GNU_SOURCE. Same layout: three 32-bit fields.
struct PeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000)
    }
}
