import Agent
import HummingbirdWebSocket
import Logging
import ServiceLifecycle
import NIOCore
import Synchronization
import VMPulseCore

/// The WebSocket at `/rpc`: the same calls as `POST /rpc`, one request (or batch) per text
/// message, plus `subscribe {kinds}` for server-pushed notifications (method `event`).
///
/// Everything the server sends goes through one queue of at most `subscriberBacklog`
/// messages, written by one task: a client that does not read fills it and is cut off
/// (its connection closed), so it never holds memory without bound, never slows the
/// sampler (the bus never waits) and never slows another client.
struct RPCSocket: Sendable {
    let methods: HostMethods
    let bus: AgentEventBus
    let limits: APILimits
    let logger: Logger

    /// WebSocket connections open now, against `limits.maxSubscribers`.
    final class Count: Sendable {
        let open = Atomic<Int>(0)
    }

    func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, channel: any Channel, count: Count) async {
        defer { count.open.subtract(1, ordering: .relaxed) }
        let (queue, queued) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingOldest(max(1, limits.subscriberBacklog)))
        let sendText: @Sendable (String) -> Void = { message in
            if case .dropped = queued.yield(message) {
                logger.notice("closing a WebSocket client that does not read (\(limits.subscriberBacklog) messages queued)")
                queued.finish()
                channel.close(promise: nil)
            }
        }
        let send: @Sendable (JSONValue) -> Void = { sendText(JSONText.serialize($0)) }
        // On the agent's shutdown WSCore sends the client a close frame; a client that does
        // not read never gets it, so the connection is closed 2 s later whatever happens.
        await withGracefulShutdownHandler {
            await answer(inbound: inbound, outbound: outbound, channel: channel, queue: queue, queued: queued, send: send, sendText: sendText)
        } onGracefulShutdown: {
            channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        }
    }

    private func answer(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, channel: any Channel,
                        queue: AsyncStream<String>, queued: AsyncStream<String>.Continuation, send: @escaping @Sendable (JSONValue) -> Void,
                        sendText: @escaping @Sendable (String) -> Void) async {
        let subscription = Mutex<AgentEventBus.Subscription?>(nil)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await text in queue {
                    do { try await outbound.write(.text(text)) } catch { break }
                }
                channel.close(promise: nil)
            }
            do {
                for try await message in inbound.messages(maxSize: limits.maxBodyBytes) {
                    let bytes: [UInt8]
                    switch message {
                    case .text(let s): bytes = Array(s.utf8)
                    case .binary(let b): bytes = Array(b.readableBytesView)
                    }
                    let answer = JSONRPC.reply(bytes, maxBatch: limits.maxBatch) { call in
                        call.method == "subscribe" ? subscribe(call, subscription: subscription, group: &group, send: send) : methods.call(call)
                    }
                    if let answer { sendText(answer) }
                }
            } catch {
                logger.debug("WebSocket client gone: \(error)")
            }
            if let s = subscription.withLock({ $0 }) { bus.unsubscribe(s) }
            queued.finish()
            group.cancelAll()
        }
    }

    /// `subscribe`: (re)starts the forwarding of the named kinds of event to this client.
    func subscribe(_ call: RPCCall, subscription: borrowing Mutex<AgentEventBus.Subscription?>, group: inout TaskGroup<Void>,
                   send: @escaping @Sendable (JSONValue) -> Void) -> Result<JSONValue, RPCError> {
        let kinds: Set<AgentEvent.Kind>
        do throws(RPCError) {
            let params = try RPCParams(call.params, method: "subscribe", names: ["kinds"])
            let names = try params.strings("kinds", limit: 100) ?? AgentEvent.Kind.allCases.map(\.rawValue)
            var chosen: Set<AgentEvent.Kind> = []
            for name in names {
                guard let kind = AgentEvent.Kind(rawValue: name) else {
                    let known = AgentEvent.Kind.allCases.map(\.rawValue).joined(separator: ", ")
                    throw RPCError(RPCError.invalidParams, "no event kind \(name) (kinds: \(known))")
                }
                chosen.insert(kind)
            }
            kinds = chosen
        } catch {
            return .failure(error)
        }
        if let old = subscription.withLock({ $0 }) {
            bus.unsubscribe(old)
        }
        let fresh = bus.subscribe(kinds: kinds, backlog: limits.subscriberBacklog)
        subscription.withLock { $0 = fresh }
        group.addTask {
            for await event in fresh.events {
                send(JSONRPC.notification(method: "event", params: Self.params(event)))
            }
            if fresh.overflowed { send(JSONRPC.notification(method: "dropped", params: ["reason": "event backlog full"])) }
        }
        return .success(["kinds": .array(kinds.map(\.rawValue).sorted().map { .string($0) })])
    }

    static func params(_ event: AgentEvent) -> JSONValue {
        ["kind": .string(event.kind.rawValue), "vmId": .string(event.vm), "name": .string(event.name),
         "time": .double(event.time), "data": .object(event.data)]
    }
}
