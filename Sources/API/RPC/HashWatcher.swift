import Agent
import Hypervisor
import ServiceLifecycle
import VMPulseCore

/// Announces a `hash` event when one of a VM's hashes changes, so that a subscribed engine
/// need not poll `Host.getAllVmRuntimeStats` to learn it. Looks once per sampling interval,
/// and only while someone subscribes (the hashes are otherwise computed on request).
public struct HashWatcher: Service {
    let methods: HostMethods
    let bus: AgentEventBus
    let interval: Double

    public init(methods: HostMethods, bus: AgentEventBus, interval: Double) {
        self.methods = methods
        self.bus = bus
        self.interval = interval
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var previous: [String: [String: JSONValue]] = [:]
            while !Task.isCancelled {
                previous = bus.subscriberCount == 0 ? [:] : announce(since: previous)
                try? await Task.sleep(for: .seconds(interval))
            }
        }
    }

    /// Publishes the changes since `previous` (machine → hashes), returning the hashes now.
    func announce(since previous: [String: [String: JSONValue]]) -> [String: [String: JSONValue]] {
        var now: [String: [String: JSONValue]] = [:]
        let wall = MonotonicTime.wallNow()
        for vm in methods.store.current() {
            let hashes = methods.view(vm).hashes
            now[vm.machine] = hashes
            guard let before = previous[vm.machine], before != hashes else { continue }
            let changed = hashes.keys.filter { before[$0] != hashes[$0] }.sorted()
            bus.publish(AgentEvent(kind: .hash, vm: vm.uuid, name: vm.name,
                                   data: ["changed": .array(changed.map { .string($0) }), "hashes": .object(hashes)], time: wall))
        }
        return now
    }
}
