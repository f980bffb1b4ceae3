import Hypervisor
import ServiceLifecycle
import Synchronization

/// The backend's event stream has one consumer; this service is it, and hands every
/// event to each internal consumer (the thin-disk loop, the status book) in order, on a
/// stream of its own. Streams are taken before `run` starts; an internal consumer is
/// trusted to keep up (its stream is unbounded), unlike an API subscriber (`AgentEventBus`).
public final class MachineEventHub: Service, Sendable {
    private let source: AsyncStream<MachineEvent>
    private let consumers = Mutex<[AsyncStream<MachineEvent>.Continuation]>([])

    public init(backend: any HypervisorBackend) {
        source = backend.events
    }

    /// A new stream of every event from now on; it ends when the backend's stream ends.
    public func stream() -> AsyncStream<MachineEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: MachineEvent.self)
        consumers.withLock { $0.append(continuation) }
        return stream
    }

    public func run() async throws {
        // The backend's stream ends when the backend closes (the sampler closes it on
        // shutdown); a graceful shutdown ends the hub too, whichever comes first.
        await cancelWhenGracefulShutdown { [self] in
            for await event in source {
                for consumer in consumers.withLock({ $0 }) { consumer.yield(event) }
            }
        }
        for consumer in consumers.withLock({ $0 }) { consumer.finish() }
        // Ended by the backend first: return only when the group shuts down (a service
        // that returns before it is told to counts, for ServiceGroup, as having failed).
        try? await gracefulShutdown()
    }
}
