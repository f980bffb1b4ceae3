import Hypervisor
import Logging
import ServiceLifecycle
import Synchronization
import VMPulseCore

/// Watches the backend for VMs and runs one `VMSampler` per VM. On graceful
/// shutdown it stops them and ends the stream of observations, so that the
/// ledger can write everything and stop.
public final class SamplerService: Service, Sendable {
    let backend: any HypervisorBackend
    let config: AgentConfig
    let store: SnapshotStore
    let observations: ObservationSink
    let logger: Logger
    /// The last problem with the host (socket directory, libvirtd), for the health view.
    public let hostError = Mutex<String?>(nil)
    /// The live VMs' ledger keys and identity conflicts.
    public let identities: IdentityRegistry
    /// Ticks, pass durations, skipped and unanswered passes (for `/metrics`).
    public let health = SamplerHealthBook()

    public init(backend: any HypervisorBackend, config: AgentConfig, store: SnapshotStore, observations: ObservationSink, logger: Logger) {
        self.backend = backend
        self.config = config
        self.store = store
        self.observations = observations
        self.logger = logger
        self.identities = IdentityRegistry(logger: logger)
    }

    private let samplers = Mutex<[String: VMSampler]>([:])
    /// VMs whose pass is still running: their tick is skipped, nobody else waits.
    private let busy = Mutex<Set<String>>([])
    private let passes = Mutex<[String: Task<Void, Never>]>([:])

    public func run() async throws {
        let clock = ContinuousClock()
        let tick = Duration.milliseconds(Int64(config.interval * 1000))
        await cancelWhenGracefulShutdown { [self] in
            var next = clock.now
            while !Task.isCancelled {
                await discover()
                health.tick(at: MonotonicTime.now())
                startPasses()
                next = next.advanced(by: tick)
                if next < clock.now { next = clock.now.advanced(by: tick) }
                do { try await clock.sleep(until: next) } catch { return }
            }
        }
        let running = passes.withLock { p in defer { p = [:] }; return p }
        for task in running.values { task.cancel() }
        for task in running.values { await task.value }
        for sampler in samplers.withLock({ Array($0.values) }) { await sampler.stop() }
        await backend.close()
        observations.finish()
        logger.info("sampler stopped")
    }

    /// Keeps one sampler per machine.
    private func discover() async {
        do throws(BackendError) {
            try await backend.refresh()
            hostError.withLock { $0 = nil }
        } catch {
            if hostError.withLock({ $0 }) != error.message { logger.error("\(error)") }
            hostError.withLock { $0 = error.message }
        }
        let present = Set(await backend.machines)
        samplers.withLock { all in
            for path in present where all[path] == nil {
                all[path] = VMSampler(machine: path, backend: backend, config: config, store: store, identities: identities,
                                      observations: observations, logger: logger)
            }
            for path in all.keys where !present.contains(path) {
                all.removeValue(forKey: path)
                store.remove(machine: path)
                identities.remove(socket: path)
            }
        }
    }

    /// Starts a pass for every VM that is not still in its previous one.
    private func startPasses() {
        let all = samplers.withLock { $0 }
        for (path, sampler) in all {
            guard busy.withLock({ $0.insert(path).inserted }) else {
                health.skipped()
                continue
            }
            let task = Task { [self] in
                let started = MonotonicTime.now()
                let alive = await sampler.pass()
                health.passEnded(seconds: MonotonicTime.now() - started, answered: store.snapshot(machine: path)?.responsive ?? false)
                if !alive {
                    _ = samplers.withLock { $0.removeValue(forKey: path) }
                }
                // A pass still running when its socket went away may have recorded a claim
                // after `discover` removed it: remove it again once no sampler is left.
                if samplers.withLock({ $0[path] !== sampler }) { identities.remove(socket: path) }
                _ = busy.withLock { $0.remove(path) }
                _ = passes.withLock { $0.removeValue(forKey: path) }
            }
            passes.withLock { $0[path] = task }
        }
    }
}
