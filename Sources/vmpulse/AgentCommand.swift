import API
import Agent
import ArgumentParser
import Glibc
import Hypervisor
import Logging
import ServiceLifecycle
import VMPulseCore

/// `vmpulse agent`: the long-running daemon.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Sample every VM on a schedule, keep the billing ledger, and serve stats over HTTP.",
        discussion: "Stops gracefully on SIGTERM or SIGINT, writing everything pending to the ledger first."
    )

    @Option(help: "Configuration file (YAML). Default: \(AgentConfig.defaultPath) when it exists.") var config: String?
    @Option(help: "How to reach the VMs: qmp (a monitor socket of vmpulse's own per VM) or libvirt.") var backend: String?
    @Option(help: "The libvirt connection URI (with --backend libvirt; default qemu:///system).") var libvirtURI: String?
    @Option(help: "The directory of the VMs' vmpulse monitor sockets.") var socketDir: String?
    @Option(help: "Where the ledger lives.") var dataDir: String?
    @Option(help: "HOST:PORT of the HTTP API.") var listen: String?
    @Option(help: "Seconds between I/O passes.") var interval: Double?

    func run() async throws {
        LogSetup.bootstrap(defaultLevel: .info)
        let logger = Logger(label: "vmpulse.agent")
        let settings: AgentConfig
        let tokens: [String]
        do {
            settings = try AgentSettings.load(file: config, backend: backend, libvirtURI: libvirtURI, socketDir: socketDir, dataDir: dataDir,
                                              listen: listen, interval: interval)
            try settings.checkThinDisksOnHost()  // a device that is not there is a config error at start
            try settings.heartbeat.checkOnHost()  // so are a missing key file and an action program that cannot run
            tokens = try settings.api.loadTokens()
        } catch {
            Stderr.write("vmpulse agent: \(error)\n")
            throw ExitCode.failure
        }
        let (host, port) = try settings.listenAddress()
        if mkdir(settings.dataDirectory, 0o750) != 0 && errno != EEXIST {
            logger.error("cannot create the data directory \(settings.dataDirectory): \(String(cString: strerror(errno))); the ledger will be degraded")
        }
        // One agent per host: a second one on the same ledger would bill every VM twice.
        let lock: DataDirectoryLock?
        do {
            lock = try DataDirectoryLock(directory: settings.dataDirectory)
        } catch {
            var exists = stat()
            guard stat(settings.dataDirectory, &exists) != 0 else {
                Stderr.write("vmpulse agent: \(error)\n")
                throw ExitCode.failure
            }
            lock = nil  // no directory, no ledger to protect: the ledger reports itself degraded
        }

        let backend: any HypervisorBackend
        do {
            backend = try Backends.make(settings.backendOptions, logger: Logger(label: "vmpulse.\(settings.backend.rawValue)"))
        } catch {
            Stderr.write("vmpulse agent: \(error)\n")
            throw ExitCode.failure
        }
        let store = SnapshotStore()
        let ledger = LedgerService(config: settings, logger: Logger(label: "vmpulse.ledger"))
        let sampler = SamplerService(backend: backend, config: settings, store: store, observations: ledger.sink, logger: logger)
        // The backend's events have one reader, the hub; the thin disks and the status book
        // each get every event, and both tell API subscribers through the bus.
        let hub = MachineEventHub(backend: backend)
        let bus = AgentEventBus()
        let thin = ThinDiskMonitor(config: settings, backend: backend, events: hub.stream(), bus: bus, logger: Logger(label: "vmpulse.thin"))
        let book = StatusBook(events: hub.stream(), store: store, bus: bus)
        let heartbeat: HeartbeatService
        do {
            heartbeat = try HeartbeatService(config: settings, backend: backend, store: store, bus: bus, logger: Logger(label: "vmpulse.heartbeat"))
        } catch {
            Stderr.write("vmpulse agent: \(error)\n")
            throw ExitCode.failure
        }
        let limits = APILimits(
            idleTimeout: .milliseconds(Int64(settings.apiIdleTimeout * 1000)), maxConnections: settings.apiMaxConnections,
            maxBodyBytes: settings.api.maxBodyBytes, maxBatch: settings.api.maxBatch,
            maxSubscribers: settings.api.maxSubscribers, subscriberBacklog: settings.api.subscriberBacklog)
        let parts = APIParts(store: store, ledger: ledger, sampler: sampler, thin: thin.status, book: book, bus: bus, interval: settings.interval,
                             heartbeat: heartbeat)
        let api = APIServer.application(host: host, port: port, parts: parts, logger: Logger(label: "vmpulse.api"),
                                        limits: limits, access: APIAccess(tokens: tokens)) { bound in
            logger.info("vmpulse agent serving http://\(host):\(bound), VMs from \(settings.vmSource), ledger \(settings.ledgerPath)")
        }
        let hashes = HashWatcher(methods: HostMethods(store: store, book: book, thin: thin.status), bus: bus, interval: settings.interval,
                                  fullInterval: settings.fullInterval)
        // Shut down in reverse: the heartbeat stops first (its actions in flight are
        // cancelled, killing their programs), then the thin disks (an extension in flight gets a
        // grace period) while the monitors are still open, then the sampler (closing the
        // monitors, which ends the hub's stream), then the ledger writes what is pending,
        // then the API stops.
        let services: [any Service] = [api, hashes, ledger, hub, book, sampler, thin, heartbeat]
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        withExtendedLifetime(lock) {}  // held until the group has stopped
    }
}

/// Where the settings of `vmpulse agent` and `vmpulse stats` come from: defaults, the file, flags.
enum AgentSettings {
    static func load(file: String?, backend: String? = nil, libvirtURI: String? = nil, socketDir: String? = nil, dataDir: String? = nil,
                     listen: String? = nil, interval: Double? = nil) throws -> AgentConfig {
        var settings = AgentConfig()
        if let file {
            settings = try AgentConfig.load(file: file)
        } else if access(AgentConfig.defaultPath, F_OK) == 0 {
            settings = try AgentConfig.load(file: AgentConfig.defaultPath)
        }
        if let backend {
            guard let kind = BackendOptions.Kind(rawValue: backend) else {
                throw ConfigError(key: "--backend", message: "'\(backend)' is not a backend (qmp or libvirt)")
            }
            settings.backend = kind
        }
        if let libvirtURI { settings.libvirtURI = libvirtURI }
        if let socketDir { settings.socketDirectory = socketDir }
        if let dataDir { settings.dataDirectory = dataDir }
        if let listen { settings.listen = listen }
        if let interval {
            settings.interval = interval
            settings.fullInterval = max(settings.fullInterval, interval)
        }
        try settings.validate()
        return settings
    }
}
