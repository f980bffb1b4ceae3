import Agent
import VMPulseCore

/// `GET /metrics`: every VM's series and the agent's own, rendered from the latest
/// snapshots and statuses. A scrape never calls QEMU or libvirt, so a stuck VM only shows
/// as stale (`vmpulse_domain_monitor_responsive` 0, a growing `vmpulse_domain_stats_age_seconds`).
public enum MetricsEndpoint {
    public static func answer(snapshot: [VMSnapshot], now: Double, thin: (String, String) -> [StatsParam],
                              ledger: LedgerStatus, sampler: SamplerHealth, hostError: String?, identityConflicts: Int,
                              interval: Double, accept: String?) -> StatsEndpoint.Answer {
        let format = MetricsText.Format.negotiate(accept: accept)
        var m = MetricsText()
        var names: [String: Int] = [:], ids: [String: Int] = [:]
        for vm in snapshot {
            names[vm.name, default: 0] += 1
            ids[vm.name + "\u{0}" + vm.uuid, default: 0] += 1
        }
        for vm in snapshot {
            var domain = vm.name
            if names[vm.name, default: 0] > 1 {
                domain += ids[vm.name + "\u{0}" + vm.uuid, default: 0] > 1 ? " (\(vm.machine))" : " (\(vm.uuid))"
            }
            VMMetrics.add(vm, domain: domain, now: now, thin: thin(vm.name, vm.uuid), to: &m)
        }
        addAgent(ledger: ledger, sampler: sampler, hostError: hostError, identityConflicts: identityConflicts,
                 vms: snapshot.count, interval: interval, now: now, to: &m)
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
}
