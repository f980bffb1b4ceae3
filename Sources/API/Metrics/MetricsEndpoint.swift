import Agent
import VMPulseCore

/// `GET /metrics`: every VM's series and the agent's own, rendered from the latest
/// snapshots and statuses. A scrape never calls QEMU or libvirt, so a stuck VM only shows
/// as stale (`vmpulse_domain_monitor_responsive` 0, a growing `vmpulse_domain_stats_age_seconds`).
public enum MetricsEndpoint {
    public static func answer(snapshot: [VMSnapshot], now: Double, thin: (String, String) -> [StatsParam],
                              ledger: LedgerStatus, sampler: SamplerHealth, hostError: String?, identityConflicts: Int,
                              interval: Double, accept: String?, heartbeat: [LinkStatus] = []) -> StatsEndpoint.Answer {
        let domains = domainNames(snapshot)
        var m = MetricsText()
        for (vm, domain) in zip(snapshot, domains) { VMMetrics.add(vm, domain: domain, now: now, thin: thin(vm.name, vm.uuid), to: &m) }
        return finish(m, ledger: ledger, sampler: sampler, hostError: hostError, identityConflicts: identityConflicts,
                      vms: snapshot.count, interval: interval, now: now, accept: accept, heartbeat: heartbeat)
    }

    /// The same answer, the VMs' series written in `parts` tasks at once and joined in order:
    /// on a 2-core host a 500-VM scrape took 48 ms in one task (`make bench-metrics`).
    public static func answer(snapshot: [VMSnapshot], now: Double, thin: @escaping @Sendable (String, String) -> [StatsParam],
                              ledger: LedgerStatus, sampler: SamplerHealth, hostError: String?, identityConflicts: Int,
                              interval: Double, accept: String?, parts: Int, heartbeat: [LinkStatus] = []) async -> StatsEndpoint.Answer {
        let domains = domainNames(snapshot)
        let size = max(50, (snapshot.count + max(1, parts) - 1) / max(1, parts))
        let chunks = stride(from: 0, to: snapshot.count, by: size).map { $0..<min($0 + size, snapshot.count) }
        let rendered = await withTaskGroup(of: (Int, MetricsText).self) { group in
            for (i, range) in chunks.enumerated() {
                group.addTask {
                    var m = MetricsText()
                    for j in range { VMMetrics.add(snapshot[j], domain: domains[j], now: now, thin: thin(snapshot[j].name, snapshot[j].uuid), to: &m) }
                    return (i, m)
                }
            }
            return await group.reduce(into: [MetricsText](repeating: MetricsText(), count: chunks.count)) { $0[$1.0] = $1.1 }
        }
        var m = MetricsText()
        for part in rendered { m.append(part) }
        return finish(m, ledger: ledger, sampler: sampler, hostError: hostError, identityConflicts: identityConflicts,
                      vms: snapshot.count, interval: interval, now: now, accept: accept, heartbeat: heartbeat)
    }

    /// Each VM's `domain` label: its name, unless another VM has it too (`-name` is only a
    /// label on a plain QEMU host); then `name (uuid)`, or `name (machine)` when the UUID is
    /// shared as well, so that no two VMs' samples ever make one series.
    static func domainNames(_ snapshot: [VMSnapshot]) -> [String] {
        var names: [String: Int] = [:], ids: [String: Int] = [:]
        for vm in snapshot {
            names[vm.name, default: 0] += 1
            ids[vm.name + "\u{0}" + vm.uuid, default: 0] += 1
        }
        return snapshot.map { vm in
            guard names[vm.name, default: 0] > 1 else { return vm.name }
            return vm.name + (ids[vm.name + "\u{0}" + vm.uuid, default: 0] > 1 ? " (\(vm.machine))" : " (\(vm.uuid))")
        }
    }

    static func finish(_ vmSeries: MetricsText, ledger: LedgerStatus, sampler: SamplerHealth, hostError: String?, identityConflicts: Int,
                       vms: Int, interval: Double, now: Double, accept: String?, heartbeat: [LinkStatus] = []) -> StatsEndpoint.Answer {
        var m = vmSeries
        let format = MetricsText.Format.negotiate(accept: accept)
        addAgent(ledger: ledger, sampler: sampler, hostError: hostError, identityConflicts: identityConflicts,
                 vms: vms, interval: interval, now: now, to: &m)
        addHeartbeat(heartbeat, now: now, to: &m)
        return StatsEndpoint.Answer(status: 200, contentType: format.contentType, bytes: m.bytes(format))
    }

    static func addAgent(ledger: LedgerStatus, sampler: SamplerHealth, hostError: String?, identityConflicts: Int,
                         vms: Int, interval: Double, now: Double, to m: inout MetricsText) {
        m.add("vmpulse_agent_vms", .gauge, "VMs the agent watches.", value: Double(vms))
        m.add("vmpulse_agent_sampling_interval_seconds", .gauge, "The configured sampling interval, in seconds.", unit: "seconds", value: interval)
        m.add("vmpulse_agent_ticks_total", .counter, "Sampling ticks the agent ran.", value: Double(sampler.ticks))
        if let last = sampler.lastTick {
            m.add("vmpulse_agent_last_tick_age_seconds", .gauge, "Seconds since the sampler's last tick.", unit: "seconds", value: max(0, now - last))
        }
        m.add("vmpulse_agent_passes_total", .counter, "VM passes (one VM's reading) that ended.", value: Double(sampler.passes))
        m.add("vmpulse_agent_pass_seconds_total", .counter, "Time spent in VM passes, in seconds (divide by passes for the mean).", unit: "seconds",
              value: sampler.passSeconds)
        m.add("vmpulse_agent_longest_pass_seconds", .gauge, "The longest VM pass that ended between the last two ticks, in seconds.", unit: "seconds",
              value: sampler.lastLongestPass)
        m.add("vmpulse_agent_skipped_passes_total", .counter, "Ticks at which a VM was still in its previous pass, so its pass was skipped.",
              value: Double(sampler.skippedPasses))
        m.add("vmpulse_agent_monitor_failures_total", .counter, "VM passes whose monitor did not answer in time.", value: Double(sampler.unansweredPasses))
        m.add("vmpulse_agent_host_problem", .gauge, "1 while the agent cannot list the host's VMs (socket directory or libvirt), else 0.",
              value: hostError == nil ? 0 : 1)
        m.add("vmpulse_agent_identity_conflicts", .gauge, "VM identities claimed by more than one VM.", value: Double(identityConflicts))
        for state in [LedgerStatus.State.starting, .ok, .degraded] {
            m.add("vmpulse_agent_ledger_state", .gauge, "The billing ledger's state: 1 for the current one.",
                  labels: [("state", state.rawValue)], value: ledger.state == state ? 1 : 0)
        }
        m.add("vmpulse_agent_ledger_pending_periods", .gauge, "Billing periods with usage not yet written to the ledger.", value: Double(ledger.pendingPeriods))
        if let w = ledger.lastWrite {
            m.add("vmpulse_agent_ledger_last_write_timestamp_seconds", .gauge, "Unix time of the ledger's last successful write.", unit: "seconds", value: w)
        }
        m.add("vmpulse_agent_ledger_dropped_observations_total", .counter, "Readings dropped before the ledger writer got them (full buffer).",
              value: Double(ledger.droppedObservations))
    }

    /// The heartbeat's links: state, suspicion, the last pulse's age and the counters, by link.
    static func addHeartbeat(_ links: [LinkStatus], now: Double, to m: inout MetricsText) {
        for link in links {
            let labels = MetricsText.Labels([("link", link.name), ("kind", link.kind)])
            for state in LinkState.allCases {
                m.add("vmpulse_heartbeat_link_state", .gauge, "A heartbeat link's state: 1 for the current one (alive, suspect, dead).",
                      labels: labels.adding("state", state.rawValue), value: link.state == state ? 1 : 0)
            }
            m.add("vmpulse_heartbeat_suspicion", .gauge, "The link detector's level: seconds without a pulse (fixed) or phi.", labels: labels,
                  value: link.suspicion.isFinite ? link.suspicion : Double.greatestFiniteMagnitude)
            if let last = link.lastPulse {
                m.add("vmpulse_heartbeat_last_pulse_age_seconds", .gauge, "Seconds since the link's last accepted pulse or answered probe.", unit: "seconds",
                      labels: labels, value: max(0, now - last))
            }
            m.add("vmpulse_heartbeat_pulses_total", .counter, "Pulses accepted (and probes answered) on the link.", labels: labels, value: Double(link.pulses))
            m.add("vmpulse_heartbeat_rejected_frames_total", .counter, "Frames refused on the link: forged, malformed, replayed or from another sender.",
                  labels: labels, value: Double(link.rejected))
            m.add("vmpulse_heartbeat_replayed_frames_total", .counter, "Frames refused as replays (a sequence or run already seen, a skewed clock).",
                  labels: labels, value: Double(link.replayed))
            m.add("vmpulse_heartbeat_forged_frames_total", .counter, "Frames whose signature did not match the shared key.", labels: labels, value: Double(link.forged))
            m.add("vmpulse_heartbeat_failed_probes_total", .counter, "Guest pings and service probes that failed.", labels: labels, value: Double(link.failedProbes))
            m.add("vmpulse_heartbeat_actions_total", .counter, "Actions the link's state changes ran.", labels: labels, value: Double(link.actionsRun))
            m.add("vmpulse_heartbeat_failed_actions_total", .counter, "Actions that failed.", labels: labels, value: Double(link.actionsFailed))
            m.add("vmpulse_heartbeat_connections", .gauge, "Open connections of a peer link.", labels: labels, value: Double(link.connections))
        }
    }
}
