import Hypervisor
import Logging
import VMPulseCore

/// Samples one VM on the agent's schedule, in a task of its own: a VM that does
/// not answer delays only itself. Keeps the VM's `io` windows, hands each disk
/// reading to accounting, and publishes the VM's snapshot after every pass.
struct VMSampler: Sendable {
    let socketPath: String
    let backend: QMPBackend
    let config: AgentConfig
    let store: SnapshotStore
    let observations: AsyncStream<Observation>.Continuation
    let logger: Logger

    /// Every group but `io`, which the I/O pass builds.
    static let fullGroups: [StatsGroup] = [.state, .cpuTotal, .balloon, .vcpu, .interface, .block, .iothread]

    func run() async {
        let boundaries = config.latencyHistograms ? config.histogramBoundariesUs.map { UInt64($0) * 1000 } : nil
        var windows: [String: IOWindows] = [:]
        var full: StatsRecord?
        var lastFull = -Double.infinity
        var lastAnswer: Double?
        var wasResponsive = true
        let clock = ContinuousClock()
        var next = clock.now
        while !Task.isCancelled {
            guard let reading = await backend.readIO(socketPath: socketPath, histogramBoundaries: boundaries) else {
                logger.info("VM behind \(socketPath) is gone")
                break
            }
            var errors: [String] = []
            if let error = reading.error {
                errors.append(error)
                if wasResponsive { logger.warning("\(reading.name) does not answer: \(error)") }
                wasResponsive = false
            } else {
                if !wasResponsive { logger.info("\(reading.name) answers again") }
                wasResponsive = true
                lastAnswer = reading.time
                account(reading, windows: &windows)
            }
            if reading.time - lastFull >= config.fullInterval {
                lastFull = reading.time
                full = await backend.collect(socketPath: socketPath, groups: Self.fullGroups)
                if full == nil { break }
            }
            publish(reading: reading, full: full, windows: windows, errors: errors, lastAnswer: lastAnswer)

            next = next.advanced(by: .milliseconds(Int64(config.interval * 1000)))
            if next < clock.now { next = clock.now.advanced(by: .milliseconds(Int64(config.interval * 1000))) }
            do { try await clock.sleep(until: next) } catch { break }
        }
        store.remove(socketPath: socketPath)
    }

    private func account(_ reading: VMIOReading, windows: inout [String: IOWindows]) {
        var seen: Set<String> = []
        for disk in reading.disks {
            seen.insert(disk.name)
            windows[disk.name, default: IOWindows()].record(
                IOSample(time: reading.time, counters: disk.counters, histograms: disk.histograms, idleTimeNs: disk.idleTimeNs))
            guard let instance = reading.instance else { continue }
            observations.yield(Observation(
                key: DiskKey(vmUUID: reading.ledgerID, disk: disk.name), vmName: reading.name, diskPath: disk.path,
                instance: instance, counters: disk.counters, time: reading.wallTime))
        }
        for gone in windows.keys where !seen.contains(gone) { windows.removeValue(forKey: gone) }
    }

    private func publish(reading: VMIOReading, full: StatsRecord?, windows: [String: IOWindows], errors: [String], lastAnswer: Double?) {
        var params = (full?.params ?? []).filter { $0.key != MonitorResponse.key }
        let responsive = reading.isResponsive
        params.insert(StatsParam(MonitorResponse.key, .int(responsive ? MonitorResponse.responsive : MonitorResponse.unresponsive)),
                      at: params.firstIndex { !$0.key.hasPrefix("state.") } ?? params.endIndex)
        if responsive || !reading.disks.isEmpty {
            params += IOParams.params(disks: reading.disks, windows: windows)
        }
        store.publish(VMSnapshot(
            socketPath: socketPath, name: full?.name ?? reading.name, uuid: full?.uuid.isEmpty == false ? full?.uuid ?? reading.uuid : reading.uuid,
            params: params, errors: errors + (full?.errors ?? []), lastAnswer: lastAnswer))
    }
}
