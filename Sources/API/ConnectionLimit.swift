import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// The API's bounds on what HTTP clients can hold (`api:` in the configuration).
public struct APILimits: Sendable, Equatable {
    /// A connection with no complete request part for this long is closed (Hummingbird's
    /// idle timeout: this also ends a request header sent a byte at a time), and a request
    /// whose body has not all arrived this long after its header is closed too, and so is
    /// one whose socket takes no more of an answer for this long (a client that stopped reading).
    public var idleTimeout: Duration
    /// The most connections held at once.
    public var maxConnections: Int
    /// The largest request body (`POST /rpc`) and WebSocket message, in bytes.
    public var maxBodyBytes: Int
    /// The most calls in one JSON-RPC batch.
    public var maxBatch: Int
    /// The most WebSocket connections at once (each may subscribe to events).
    public var maxSubscribers: Int
    /// Messages queued for a WebSocket client that does not read; one more ends its connection.
    public var subscriberBacklog: Int

    public init(idleTimeout: Duration = .seconds(30), maxConnections: Int = 256, maxBodyBytes: Int = 1 << 20, maxBatch: Int = 1000,
                maxSubscribers: Int = 16, subscriberBacklog: Int = 1024) {
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.maxBodyBytes = maxBodyBytes
        self.maxBatch = maxBatch
        self.maxSubscribers = maxSubscribers
        self.subscriberBacklog = subscriberBacklog
    }
}

/// Every open connection of the API, so that one more than the limit can make room.
///
/// Hummingbird's own limit (`MaximumAvailableConnections`) stops accepting at the limit:
/// the descriptors stay bounded, but a new connection (a health probe, `vmpulse stats`)
/// then waits in the kernel's backlog until an idle connection times out, 30 s by
/// default. Here a connection beyond the limit closes the connection that has been idle
/// longest (no request in progress), so a probe is answered at once while idle clients
/// hold every place; when every connection is in the middle of a request, the one whose
/// request has waited longest is closed (a client that pipelines requests and never reads
/// the answers would otherwise hold its place for good).
final class ConnectionTable: Sendable {
    private struct Entry {
        let channel: any Channel
        /// Requests read and not yet answered.
        var requests: Int
        var lastActive: ContinuousClock.Instant
        /// Whether a first request head arrived (or the connection became a WebSocket).
        var started = false
        /// A WebSocket (a subscriber): closed to make room only when nothing else can be.
        var websocket = false
    }

    let limit: Int
    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    var count: Int { entries.withLock { $0.count } }

    /// Takes a new connection in; returns the connection to close when that makes one
    /// too many (the longest-idle other one, or this one when all others are busy).
    func admit(_ channel: any Channel) -> (any Channel)? {
        entries.withLock { table in
            table[ObjectIdentifier(channel)] = Entry(channel: channel, requests: 0, lastActive: .now)
            guard table.count > limit else { return nil }
            // The longest-idle other HTTP connection; when every other one is in a request,
            // the one whose request has waited longest (a client that sends requests and
            // never reads the answers holds its request open for good); a WebSocket last.
            let others = table.filter { $0.key != ObjectIdentifier(channel) }
            let http = others.filter { !$0.value.websocket }
            let victim = (http.filter { $0.value.requests == 0 }.min { $0.value.lastActive < $1.value.lastActive }
                ?? http.min { $0.value.lastActive < $1.value.lastActive }
                ?? others.min { $0.value.lastActive < $1.value.lastActive })?.key ?? ObjectIdentifier(channel)
            return table.removeValue(forKey: victim)?.channel
        }
    }

    /// The connection's first request arrived, or it became a WebSocket.
    func start(_ channel: any Channel, websocket: Bool = false) {
        entries.withLock { table in
            table[ObjectIdentifier(channel)]?.started = true
            if websocket { table[ObjectIdentifier(channel)]?.websocket = true }
        }
    }

    /// Whether the connection is held and has not sent a first request yet.
    func waiting(_ channel: any Channel) -> Bool {
        entries.withLock { $0[ObjectIdentifier(channel)].map { !$0.started } ?? false }
    }

    /// A request began (+1) or was answered (-1) on this connection.
    func request(_ channel: any Channel, _ delta: Int) {
        entries.withLock { table in
            guard var entry = table[ObjectIdentifier(channel)] else { return }
            entry.requests = max(0, entry.requests + delta)
            entry.lastActive = .now
            table[ObjectIdentifier(channel)] = entry
        }
    }

    func remove(_ channel: any Channel) {
        _ = entries.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }
}

/// First on each connection, before HTTP decoding (the WebSocket upgrade pipeline adds
/// the HTTP handlers only once a first request head has arrived): registers the connection
/// in the table, closing one when over the limit, and closes it when no first request head
/// has arrived within the timeout (a silent connection, or a header sent a byte at a time).
final class ConnectionAdmissionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let table: ConnectionTable
    private let firstRequestTimeout: TimeAmount
    private var admitted = false
    private var deadline: Scheduled<Void>?

    init(table: ConnectionTable, firstRequestTimeout: TimeAmount) {
        self.table = table
        self.firstRequestTimeout = firstRequestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        table.remove(context.channel)
        context.fireChannelInactive()
    }

    /// The server stops: a connection that has not sent a request yet has nothing to
    /// finish (the HTTP handlers above, which close idle connections, are not there yet).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, table.waiting(context.channel) {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard !admitted else { return }
        admitted = true
        let channel = context.channel
        table.admit(channel)?.close(promise: nil)
        let table = self.table
        deadline = context.eventLoop.scheduleTask(in: firstRequestTimeout) {
            if table.waiting(channel) { channel.close(promise: nil) }
        }
    }
}

/// On each HTTP connection, after HTTP decoding: tells the table when a request is in
/// progress, closes a connection whose request body does not all arrive within the
/// timeout (a body sent a byte at a time would otherwise keep resetting Hummingbird's idle
/// timer), and closes one that stays unwritable for the timeout (a client that stopped
/// reading a panel stream would otherwise hold its task and its place for ever).
final class ConnectionLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let table: ConnectionTable
    private let requestTimeout: TimeAmount
    private var requestDeadline: Scheduled<Void>?
    /// Set while the socket cannot take more: a client that stops reading an answer (a panel
    /// stream, a large scrape) is closed when this passes, instead of holding its task for ever.
    private var writeDeadline: Scheduled<Void>?

    init(table: ConnectionTable, requestTimeout: TimeAmount) {
        self.table = table
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        table.start(context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelDeadlines()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelDeadlines()
    }

    private func cancelDeadlines() {
        requestDeadline?.cancel()
        requestDeadline = nil
        writeDeadline?.cancel()
        writeDeadline = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writeDeadline?.cancel()
        writeDeadline = nil
        if !context.channel.isWritable {
            let channel = context.channel
            writeDeadline = context.eventLoop.scheduleTask(in: requestTimeout) { channel.close(promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            table.request(context.channel, +1)
            requestDeadline?.cancel()
            let channel = context.channel
            requestDeadline = context.eventLoop.scheduleTask(in: requestTimeout) { channel.close(promise: nil) }
        case .body:
            break
        case .end:
            requestDeadline?.cancel()
            requestDeadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { table.request(context.channel, -1) }
        context.write(data, promise: promise)
    }
}
