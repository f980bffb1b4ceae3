import Logging

/// The engine's hold on the fleet store. When the store cannot be opened or written (a
/// PostgreSQL server that went away, a full disk), the engine keeps polling: the store is
/// reported degraded, the status changes seen meanwhile are kept (the newest
/// `maxPending`; what is dropped is counted), and each host's latest view is written
/// when the store works again. Billing is not copied meanwhile: it stays in the agents'
/// ledgers, and the cursor in the store says where to go on from.
public actor StoreKeeper {
    public enum State: String, Sendable { case starting, ok, degraded }

    let location: StoreLocation
    let logger: Logger
    private var store: FleetStore?
    public private(set) var state = State.starting
    public private(set) var problem: String?
    private var pending: [StatusChange] = []
    public private(set) var droppedChanges = 0
    private var lastOpenAttempt = -Double.infinity
    private var lastLogged = -Double.infinity

    public static let maxPending = 100_000
    /// Seconds between attempts to open a store that failed.
    static let reopenInterval = 2.0

    public init(location: StoreLocation, logger: Logger) {
        self.location = location
        self.logger = logger
    }

    /// The store, opened (and migrated) on first use; nil while it cannot be.
    func open() async -> FleetStore? {
        if let store { return store }
        let now = WallClock.now()
        guard now - lastOpenAttempt >= Self.reopenInterval else { return nil }
        lastOpenAttempt = now
        do {
            let opened = try await FleetStore.open(location)
            store = opened
            recovered()
            return opened
        } catch {
            failed(error)
            return nil
        }
    }

    /// Writes a host's state and VMs with the status changes, and any kept from before.
    public func save(host: HostReport, vms: [VMReport]?, changes: [StatusChange]) async {
        pending += changes
        if pending.count > Self.maxPending {
            droppedChanges += pending.count - Self.maxPending
            pending.removeFirst(pending.count - Self.maxPending)
        }
        guard let store = await open() else { return }
        let batch = pending
        do {
            try await store.save(host: host, vms: vms, changes: batch)
            pending.removeFirst(min(batch.count, pending.count))
            recovered()
        } catch {
            failed(error)
        }
    }

    /// Runs `body` on the store when it is there; a failure marks it degraded.
    func with<T: Sendable>(_ body: @Sendable (FleetStore) async throws(FleetStoreError) -> T) async -> T? {
        guard let store = await open() else { return nil }
        do throws(FleetStoreError) {
            let value = try await body(store)
            recovered()
            return value
        } catch {
            failed(error)
            return nil
        }
    }

    public var pendingChanges: Int { pending.count }

    private func failed(_ error: any Error) {
        let first = state != .degraded
        state = .degraded
        problem = "\(error)"
        let now = WallClock.now()
        if first || now - lastLogged >= 60 {
            lastLogged = now
            logger.error("fleet store degraded: \(error); polling goes on, \(pending.count) status change(s) kept for when it is back")
        }
    }

    private func recovered() {
        if state == .degraded { logger.notice("fleet store works again; \(pending.count) kept status change(s) to write") }
        state = .ok
        problem = nil
    }

    public func close() async {
        await store?.database.close()
        store = nil
    }
}
