import Agent
import Hypervisor
import ServiceLifecycle
import VMPulseCore

/// Announces a `hash` event when one of a VM's hashes changes, so that a subscribed engine
/// need not poll `Host.getAllVmRuntimeStats` to learn it. Looks once per sampling interval
/// while someone subscribes; without subscribers it only keeps its baseline, once per
/// full interval (what the hashes cover changes on full passes and events), so that a
/// change just before a subscription is still announced to it.
public struct HashWatcher: Service {
    let methods: HostMethods
    let bus: AgentEventBus
    let interval: Double
    let fullInterval: Double

    public init(methods: HostMethods, bus: AgentEventBus, interval: Double, fullInterval: Double) {
        self.methods = methods
        self.bus = bus
        self.interval = interval
        self.fullInterval = max(interval, fullInterval)
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var previous: [String: [String: JSONValue]] = [:]
            var baselineAge = Double.infinity
            while !Task.isCancelled {
                if bus.subscriberCount > 0 {
                    previous = announce(since: previous)
                    baselineAge = 0
                } else if baselineAge >= fullInterval {
                    previous = hashes()
                    baselineAge = 0
                }
                try? await Task.sleep(for: .seconds(interval))
                baselineAge += interval
            }
        }
    }

    /// Every VM's hashes now, by machine.
    func hashes() -> [String: [String: JSONValue]] {
        Dictionary(methods.store.current().map { ($0.machine, methods.view($0).hashes) }, uniquingKeysWith: { a, _ in a })
    }

    /// Publishes the changes since `previous` (machine → hashes), returning the hashes now.
    func announce(since previous: [String: [String: JSONValue]]) -> [String: [String: JSONValue]] {
        var now: [String: [String: JSONValue]] = [:]
        let wall = MonotonicTime.wallNow()
        for vm in methods.store.current() {
            let hashes = methods.view(vm).hashes
            now[vm.machine] = hashes
            // A VM the baseline lacks (new since the last look) has all its hashes changed.
            let before = previous[vm.machine] ?? [:]
            guard before != hashes else { continue }
            let changed = hashes.keys.filter { before[$0] != hashes[$0] }.sorted()
            bus.publish(AgentEvent(kind: .hash, vm: vm.uuid, name: vm.name,
                                   data: ["changed": .array(changed.map { .string($0) }), "hashes": .object(hashes)], time: wall))
        }
        return now
    }
}
