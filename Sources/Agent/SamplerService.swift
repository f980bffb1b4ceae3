import Hypervisor
import Logging
import ServiceLifecycle
import Synchronization
import VMPulseCore

/// Watches the socket directory and runs one `VMSampler` per VM. On graceful
/// shutdown it stops them and ends the stream of observations, so that the
/// ledger can write everything and stop.
public final class SamplerService: Service, Sendable {
    let backend: QMPBackend
    let config: AgentConfig
    let store: SnapshotStore
    let observations: AsyncStream<Observation>.Continuation
    let logger: Logger
    /// The last problem with the host (socket directory), for the health view.
    public let hostError = Mutex<String?>(nil)

    public init(backend: QMPBackend, config: AgentConfig, store: SnapshotStore, observations: AsyncStream<Observation>.Continuation, logger: Logger) {
        self.backend = backend
        self.config = config
        self.store = store
        self.observations = observations
        self.logger = logger
    }

    private let samplers = Mutex<[String: Task<Void, Never>]>([:])

    public func run() async throws {
        let clock = ContinuousClock()
        await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                await discover()
                try? await clock.sleep(for: .milliseconds(Int64(config.interval * 1000)))
            }
        }
        let all = samplers.withLock { s in defer { s = [:] }; return s }
        for task in all.values { task.cancel() }
        for task in all.values { await task.value }
        await backend.close()
        observations.finish()
        logger.info("sampler stopped")
    }

    /// Starts a sampler for each new socket and stops those whose socket is gone.
    private func discover() async {
        do throws(BackendError) {
            try await backend.refresh()
            hostError.withLock { $0 = nil }
        } catch {
            if hostError.withLock({ $0 }) != error.message { logger.error("\(error)") }
            hostError.withLock { $0 = error.message }
        }
        let present = Set(await backend.socketPaths)
        let running = samplers.withLock { $0 }
        for path in present where running[path] == nil {
            let sampler = VMSampler(socketPath: path, backend: backend, config: config, store: store, observations: observations, logger: logger)
            samplers.withLock {
                $0[path] = Task { [self] in
                    await sampler.run()
                    // The VM is gone (or the task was stopped): a socket that comes back gets a new sampler.
                    _ = samplers.withLock { $0.removeValue(forKey: path) }
                }
            }
        }
        for (path, task) in running where !present.contains(path) {
            task.cancel()
            samplers.withLock { _ = $0.removeValue(forKey: path) }
            store.remove(socketPath: path)
        }
    }
}
