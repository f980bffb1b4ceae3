import Synchronization
import VMPulseCore

/// Something the agent tells subscribers of the host API (JSON-RPC notifications).
public struct AgentEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        /// A VM's engine status or pause code changed.
        case status
        /// A disk failed a request.
        case ioError = "io-error"
        /// A thin disk's writes crossed its threshold.
        case threshold
        /// A thin disk was extended.
        case extended
        /// One of a VM's hashes changed.
        case hash
        /// A heartbeat link changed state (`name` is the link; `vm` is empty).
        case heartbeat
        /// A heartbeat action ran, with its outcome.
        case heartbeatAction = "heartbeat-action"
        /// A peer agent sent a notice over a heartbeat link (recorded, never acted on).
        case heartbeatNotice = "heartbeat-notice"
    }

    public var kind: Kind
    /// The VM's UUID (as the engine verbs key VMs), and its name.
    public var vm: String
    public var name: String
    /// The event's fields.
    public var data: [String: JSONValue]
    /// Unix seconds.
    public var time: Double

    public init(kind: Kind, vm: String, name: String, data: [String: JSONValue], time: Double) {
        self.kind = kind
        self.vm = vm
        self.name = name
        self.data = data
        self.time = time
    }
}

/// Hands agent events to API subscribers. Each subscriber has a bounded backlog: one that
/// does not read is cut off once its backlog is full (its stream ends, `overflowed` tells
/// why), and publishing never waits on any subscriber, so a slow one slows nobody.
public final class AgentEventBus: Sendable {
    public final class Subscription: Sendable {
        public let events: AsyncStream<AgentEvent>
        let continuation: AsyncStream<AgentEvent>.Continuation
        let kinds: Set<AgentEvent.Kind>
        private let state = Mutex(false)

        init(kinds: Set<AgentEvent.Kind>, backlog: Int) {
            self.kinds = kinds
            (events, continuation) = AsyncStream.makeStream(of: AgentEvent.self, bufferingPolicy: .bufferingOldest(max(1, backlog)))
        }

        /// Whether the subscription ended because its backlog was full.
        public var overflowed: Bool { state.withLock { $0 } }

        func offer(_ event: AgentEvent) -> Bool {
            guard kinds.contains(event.kind) else { return true }
            if case .dropped = continuation.yield(event) {
                state.withLock { $0 = true }
                continuation.finish()
                return false
            }
            return true
        }
    }

    private let subscribers = Mutex<[ObjectIdentifier: Subscription]>([:])

    public init() {}

    public var subscriberCount: Int { subscribers.withLock { $0.count } }

    /// A new subscription to `kinds`, holding at most `backlog` unread events.
    public func subscribe(kinds: Set<AgentEvent.Kind>, backlog: Int) -> Subscription {
        let subscription = Subscription(kinds: kinds, backlog: backlog)
        subscribers.withLock { $0[ObjectIdentifier(subscription)] = subscription }
        return subscription
    }

    public func unsubscribe(_ subscription: Subscription) {
        subscription.continuation.finish()
        _ = subscribers.withLock { $0.removeValue(forKey: ObjectIdentifier(subscription)) }
    }

    public func publish(_ event: AgentEvent) {
        let all = subscribers.withLock { Array($0.values) }
        for subscription in all where !subscription.offer(event) {
            _ = subscribers.withLock { $0.removeValue(forKey: ObjectIdentifier(subscription)) }
        }
    }
}
