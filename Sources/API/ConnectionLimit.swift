import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// The API's bounds on what HTTP clients can hold (`api:` in the configuration).
public struct APILimits: Sendable, Equatable {
    /// A connection with no complete request part for this long is closed (Hummingbird's
    /// idle timeout: this also ends a request header sent a byte at a time), and a request
    /// whose body has not all arrived this long after its header is closed too.
    public var idleTimeout: Duration
    /// The most connections held at once.
    public var maxConnections: Int

    public init(idleTimeout: Duration = .seconds(30), maxConnections: Int = 256) {
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
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
            // The longest-idle other connection; when every other one is in a request, the
            // one whose request has waited longest (a client that sends requests and never
            // reads the answers holds its request open for good).
            let others = table.filter { $0.key != ObjectIdentifier(channel) }
            let victim = (others.filter { $0.value.requests == 0 }.min { $0.value.lastActive < $1.value.lastActive }
                ?? others.min { $0.value.lastActive < $1.value.lastActive })?.key ?? ObjectIdentifier(channel)
            return table.removeValue(forKey: victim)?.channel
        }
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

/// On each connection, after HTTP decoding: registers the connection in the table (closing
/// one when over the limit), tells the table when a request is in progress, and closes a
/// connection whose request body does not all arrive within the timeout (a body sent a
/// byte at a time would otherwise keep resetting Hummingbird's idle timer).
final class ConnectionLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let table: ConnectionTable
    private let requestTimeout: TimeAmount
    private var admitted = false
    private var requestDeadline: Scheduled<Void>?

    init(table: ConnectionTable, requestTimeout: TimeAmount) {
        self.table = table
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context.channel) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        leave(context.channel)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        leave(context.channel)
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

    private func admit(_ channel: any Channel) {
        guard !admitted else { return }
        admitted = true
        table.admit(channel)?.close(promise: nil)
    }

    private func leave(_ channel: any Channel) {
        requestDeadline?.cancel()
        requestDeadline = nil
        table.remove(channel)
    }
}
