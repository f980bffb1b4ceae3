import Hypervisor
import ServiceLifecycle
import Synchronization
import VMPulseCore

/// What the backend's events say about each VM's run state, at once (the snapshot's state
/// comes from the full pass, up to `full_interval` old): paused or running, and why it
/// paused (`PauseCode`, which only the I/O-error event tells: ENOSPC or another error).
/// Announces status changes, I/O errors and threshold crossings on the bus.
public final class StatusBook: Service, Sendable {
    public struct Entry: Sendable, Equatable {
        public var paused: Bool
        public var code: PauseCode
        /// Unix seconds of the event.
        public var since: Double
    }

    private let events: AsyncStream<MachineEvent>
    private let store: SnapshotStore
    private let bus: AgentEventBus
    private let entries = Mutex<[String: Entry]>([:])

    public init(events: AsyncStream<MachineEvent>, store: SnapshotStore, bus: AgentEventBus) {
        self.events = events
        self.store = store
        self.bus = bus
    }

    /// What the events since the VM's monitor (re)connected say; nil when none told.
    public func entry(machine: String) -> Entry? {
        entries.withLock { $0[machine] }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { [self] in
            for await event in events { handle(event) }
        }
        // The events end with the backend, which the sampler closes on shutdown, maybe
        // before the group tells this service: wait to be told (see MachineEventHub.run).
        try? await gracefulShutdown()
    }

    func handle(_ event: MachineEvent) {
        let now = MonotonicTime.wallNow()
        switch event.kind {
        case .connected, .disconnected:
            _ = entries.withLock { $0.removeValue(forKey: event.machine) }
        case .paused:
            // An I/O error that paused the VM came first and said why: keep its code.
            let already = entries.withLock { $0[event.machine]?.paused ?? false }
            if !already { set(event.machine, Entry(paused: true, code: .other, since: now)) }
        case .resumed:
            set(event.machine, Entry(paused: false, code: .none, since: now))
        case .ioError(let node, let device, let noSpace, let paused):
            announce(.ioError, event.machine, ["device": .string(device), "node": node.map { .string($0) } ?? .null,
                                               "nospace": .bool(noSpace), "paused": .bool(paused)], now)
            if paused { set(event.machine, Entry(paused: true, code: noSpace ? .noSpace : .ioError, since: now)) }
        case .writeThreshold(let node):
            announce(.threshold, event.machine, ["node": node.map { .string($0) } ?? .null], now)
        }
    }

    private func set(_ machine: String, _ entry: Entry) {
        let changed = entries.withLock { table in
            defer { table[machine] = entry }
            return table[machine].map { $0.paused != entry.paused || $0.code != entry.code } ?? true
        }
        guard changed else { return }
        announce(.status, machine, ["status": .string(entry.paused ? "Paused" : "Up"), "pauseCode": .string(entry.code.rawValue)], entry.since)
    }

    private func announce(_ kind: AgentEvent.Kind, _ machine: String, _ data: [String: JSONValue], _ time: Double) {
        let vm = store.snapshot(machine: machine)
        bus.publish(AgentEvent(kind: kind, vm: vm?.uuid ?? "", name: vm?.name ?? machine, data: data, time: time))
    }
}
