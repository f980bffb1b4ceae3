import Hypervisor
import Logging
import VMPulseCore

/// Samples one VM. The sampler service starts one `pass()` per tick for every VM
/// whose previous pass has finished, so a VM that does not answer delays only
/// itself (its ticks are skipped), and the passes of all VMs start together (one
/// timer for the host, not one per VM). Keeps the VM's `io` windows, hands each
/// disk reading to accounting, and publishes the VM's snapshot after every pass.
actor VMSampler {
    let machine: String
    private let backend: any HypervisorBackend
    private let config: AgentConfig
    private let store: SnapshotStore
    private let observations: ObservationSink
    private let logger: Logger
    private let boundaries: [UInt64]?
    private let identities: IdentityRegistry
    /// The key the last pass found; a VM is billed only once the same key held for two
    /// passes in a row, so that every live VM's claim is known (all VMs pass on the
    /// first tick) before anything is billed under a key another VM might share.
    private var settledKey: String?

    private var windows: [String: IOWindows] = [:]
    private var full: StatsRecord?
    private var lastFull = -Double.infinity
    private var lastAnswer: Double?
    private var wasResponsive = true
    private var description: MachineDescription?
    private var cpuSample: (time: Double, total: UInt64, vcpus: UInt64)?
    private var cpu: CPUUsage?
    private var startedAt: Double?
    /// The guest agent's last answer, and the reading in flight (one at a time, off the passes).
    private var guest: GuestInfo?
    private var guestReading: Task<Void, Never>?

    /// Every group but `io`, which the I/O pass builds.
    static let fullGroups: [StatsGroup] = [.state, .cpuTotal, .balloon, .vcpu, .interface, .block, .iothread]

    init(machine: String, backend: any HypervisorBackend, config: AgentConfig, store: SnapshotStore, identities: IdentityRegistry,
         observations: ObservationSink, logger: Logger) {
        self.identities = identities
        self.machine = machine
        self.backend = backend
        self.config = config
        self.store = store
        self.observations = observations
        self.logger = logger
        self.boundaries = config.latencyHistograms ? config.histogramBoundariesNs : nil
    }

    /// One I/O pass (and a full pass when one is due). Returns false when the VM is gone.
    func pass() async -> Bool {
        guard let reading = await backend.readIO(machine: machine, histogramBoundaries: boundaries) else {
            logger.debug("VM \(machine) is gone")
            store.remove(machine: machine)
            return false
        }
        var errors: [String] = []
        let (key, conflict) = identities.update(socket: machine, claim: reading.claim)
        if let conflict { errors.append("identity: \(conflict)") }
        if let error = reading.error {
            errors.append(error)
            if wasResponsive { logger.warning("\(reading.name) does not answer: \(error)") }
            wasResponsive = false
        } else {
            if !wasResponsive { logger.info("\(reading.name) answers again") }
            wasResponsive = true
            lastAnswer = reading.time
            account(reading, key: key == settledKey ? key : nil)
        }
        settledKey = key
        if reading.time - lastFull >= config.fullInterval {
            lastFull = reading.time
            guard let record = await backend.collect(machine: machine, groups: Self.fullGroups) else {
                store.remove(machine: machine)
                return false
            }
            full = record
            if reading.isResponsive {
                // A VM that did not answer its I/O pass keeps the description it had.
                do throws(MachineError) { description = try await backend.describe(machine: machine) } catch {
                    if error.kind == .gone { description = nil }
                }
            }
            readGuest()
            if let sample = CPUUsage.sample(record.params) {
                if let last = cpuSample { cpu = CPUUsage.between((last.total, last.vcpus), sample, interval: reading.time - last.time) }
                cpuSample = (reading.time, sample.total, sample.vcpus)
            }
        }
        if let instance = reading.instance { startedAt = instance.startedAt }
        store.publish(VMSnapshot(
            machine: machine, name: full?.name ?? reading.name,
            uuid: (full?.uuid).flatMap { $0.isEmpty ? nil : $0 } ?? reading.uuid,
            full: full?.params ?? [], disks: reading.disks, windows: windows, responsive: reading.isResponsive,
            errors: errors + (full?.errors ?? []), lastAnswer: lastAnswer, description: description, cpu: cpu, startedAt: startedAt,
            guest: guest))
        return true
    }

    /// Asks the guest agent in a task of its own (a silent agent takes a timeout per
    /// command), unless the last reading is still running; its answer shows from the next
    /// pass on, and no answer means no guest data.
    private func readGuest() {
        guard guestReading == nil else { return }
        guestReading = Task { [backend, machine] in
            let info = await backend.guestInfo(machine: machine)
            await self.guestRead(info)
        }
    }

    private func guestRead(_ info: GuestInfo?) {
        guest = info
        guestReading = nil
    }

    /// Stops a guest-agent reading in flight (the sampler service stops).
    func stop() {
        guestReading?.cancel()
    }

    /// Keeps the windows and hands the readings to accounting under `key` (none without one).
    private func account(_ reading: VMIOReading, key: String?) {
        var seen: Set<String> = []
        for disk in reading.disks {
            seen.insert(disk.name)
            windows[disk.name, default: IOWindows()].record(
                IOSample(time: reading.time, counters: disk.counters, histograms: disk.histograms, idleTimeNs: disk.idleTimeNs))
            guard let instance = reading.instance, let key else { continue }
            observations.yield(Observation(
                key: DiskKey(vmUUID: key, disk: disk.name), vmName: reading.name, diskPath: disk.path,
                instance: instance, counters: disk.counters, time: reading.wallTime))
        }
        for gone in windows.keys where !seen.contains(gone) { windows.removeValue(forKey: gone) }
    }
}
