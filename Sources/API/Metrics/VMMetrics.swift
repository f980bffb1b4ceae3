import Agent
import Hypervisor
import VMPulseCore

/// One VM's series, from its snapshot's keys (those of `vmpulse stats`, and the thin
/// group's): the libvirt exporters' names for what they also export, `vmpulse_` names for
/// the rest. Every series has the `domain` label (the VM's name, as libvirt names it).
enum VMMetrics {
    /// A key under `group.N.` mapped to a metric: its name, kind, help, unit and the factor
    /// from vmpulse's unit (ns, KiB) to Prometheus' (seconds, bytes).
    struct Mapping {
        var name: String
        var kind: MetricsText.Kind
        var help: String
        var scale: Double = 1
        var unit: String?
    }

    static let nanoseconds = 1e-9
    static let kibibytes = 1024.0

    static let block: [String: Mapping] = [
        "rd.bytes": .init(name: "libvirt_domain_block_stats_read_bytes_total", kind: .counter, help: "Number of bytes read from a block device, in bytes.", unit: "bytes"),
        "rd.reqs": .init(name: "libvirt_domain_block_stats_read_requests_total", kind: .counter, help: "Number of read requests from a block device."),
        "rd.times": .init(name: "libvirt_domain_block_stats_read_time_seconds_total", kind: .counter, help: "Total time spent on reads from a block device, in seconds.", scale: nanoseconds, unit: "seconds"),
        "wr.bytes": .init(name: "libvirt_domain_block_stats_write_bytes_total", kind: .counter, help: "Number of bytes written to a block device, in bytes.", unit: "bytes"),
        "wr.reqs": .init(name: "libvirt_domain_block_stats_write_requests_total", kind: .counter, help: "Number of write requests to a block device."),
        "wr.times": .init(name: "libvirt_domain_block_stats_write_time_seconds_total", kind: .counter, help: "Total time spent on writes to a block device, in seconds.", scale: nanoseconds, unit: "seconds"),
        "fl.reqs": .init(name: "libvirt_domain_block_stats_flush_requests_total", kind: .counter, help: "Number of flush requests from a block device."),
        "fl.times": .init(name: "libvirt_domain_block_stats_flush_time_seconds_total", kind: .counter, help: "Total time spent on flushes of a block device, in seconds.", scale: nanoseconds, unit: "seconds"),
        "allocation": .init(name: "libvirt_domain_block_stats_allocation", kind: .gauge, help: "Offset of the highest written sector of a block device, in bytes."),
        "capacity": .init(name: "libvirt_domain_block_stats_capacity_bytes", kind: .gauge, help: "Logical size of a block device, in bytes.", unit: "bytes"),
        "physical": .init(name: "libvirt_domain_block_stats_physicalsize_bytes", kind: .gauge, help: "Physical size of the container of a block device, in bytes.", unit: "bytes"),
        "threshold": .init(name: "vmpulse_block_write_threshold_bytes", kind: .gauge, help: "Write threshold set on a block device's node, in bytes.", unit: "bytes"),
    ]

    static let net: [String: Mapping] = [
        "rx.bytes": .init(name: "libvirt_domain_interface_stats_receive_bytes_total", kind: .counter, help: "Number of bytes received on a network interface, in bytes.", unit: "bytes"),
        "rx.pkts": .init(name: "libvirt_domain_interface_stats_receive_packets_total", kind: .counter, help: "Number of packets received on a network interface."),
        "rx.errs": .init(name: "libvirt_domain_interface_stats_receive_errors_total", kind: .counter, help: "Number of packet receive errors on a network interface."),
        "rx.drop": .init(name: "libvirt_domain_interface_stats_receive_drops_total", kind: .counter, help: "Number of packet receive drops on a network interface."),
        "tx.bytes": .init(name: "libvirt_domain_interface_stats_transmit_bytes_total", kind: .counter, help: "Number of bytes transmitted on a network interface, in bytes.", unit: "bytes"),
        "tx.pkts": .init(name: "libvirt_domain_interface_stats_transmit_packets_total", kind: .counter, help: "Number of packets transmitted on a network interface."),
        "tx.errs": .init(name: "libvirt_domain_interface_stats_transmit_errors_total", kind: .counter, help: "Number of packet transmit errors on a network interface."),
        "tx.drop": .init(name: "libvirt_domain_interface_stats_transmit_drops_total", kind: .counter, help: "Number of packet transmit drops on a network interface."),
    ]

    static let vcpu: [String: Mapping] = [
        "time": .init(name: "libvirt_domain_vcpu_time_seconds_total", kind: .counter, help: "Amount of CPU time used by a virtual CPU, in seconds.", scale: nanoseconds, unit: "seconds"),
        "delay": .init(name: "libvirt_domain_vcpu_delay_seconds_total", kind: .counter, help: "Time a virtual CPU's thread waited to run, in seconds.", scale: nanoseconds, unit: "seconds"),
        "wait": .init(name: "libvirt_domain_vcpu_wait_seconds_total", kind: .counter, help: "Time a virtual CPU's thread waited, in seconds.", scale: nanoseconds, unit: "seconds"),
    ]

    static let thin: [String: Mapping] = [
        "threshold": .init(name: "vmpulse_thin_threshold_bytes", kind: .gauge, help: "Write threshold armed on a thin disk, in bytes.", unit: "bytes"),
        "physical": .init(name: "vmpulse_thin_physical_bytes", kind: .gauge, help: "Size of a thin disk's device, in bytes.", unit: "bytes"),
        "maximum": .init(name: "vmpulse_thin_maximum_bytes", kind: .gauge, help: "Most a thin disk may grow to, in bytes.", unit: "bytes"),
        "extensions": .init(name: "vmpulse_thin_extensions_total", kind: .counter, help: "Extensions of a thin disk done by the agent."),
        "failures": .init(name: "vmpulse_thin_failures_total", kind: .counter, help: "Extension attempts or reads of a thin disk that failed."),
        "pauses_recovered": .init(name: "vmpulse_thin_pauses_recovered_total", kind: .counter, help: "Guests paused out of space on a thin disk and resumed by the agent."),
        "paused": .init(name: "vmpulse_thin_paused", kind: .gauge, help: "1 while the guest is paused out of space on a thin disk."),
        "last_extension_ms": .init(name: "vmpulse_thin_last_extension_seconds", kind: .gauge, help: "Duration of a thin disk's last extension, in seconds.", scale: 1e-3, unit: "seconds"),
    ]

    // Each table in the order its series are written, sorted once.
    static let sortedVcpu = vcpu.sorted { $0.value.name < $1.value.name }
    static let sortedNet = net.sorted { $0.value.name < $1.value.name }
    static let sortedBlock = block.sorted { $0.value.name < $1.value.name }
    static let sortedThin = thin.sorted { $0.value.name < $1.value.name }

    static let operations = ["read", "write", "flush", "unmap"]

    /// Adds the series of one VM, read at monotonic time `now`.
    /// `domain` is `name` unless another VM has it too (`-name` is only a label on a plain
    /// QEMU host); then it is `name (uuid)`, or `name (machine)` when the UUID is shared as well,
    /// so that no two VMs' samples ever make one series.
    static func add(_ vm: VMSnapshot, domain name: String? = nil, now: Double, thin thinParams: [StatsParam], to m: inout MetricsText) {
        let domain = ("domain", name ?? vm.name)
        let domainLabels = MetricsText.Labels([domain])
        var values: [String: TypedValue] = [:]
        var indexed: [String: [Int: [String: TypedValue]]] = [:]
        // `full` (every group but `io`, which `addIO` reads from the disks) and the thin keys.
        for p in vm.full + thinParams {
            if let (group, n, suffix) = indexedKey(p.key) {
                indexed[group, default: [:]][n, default: [:]][suffix] = p.value
            } else {
                values[p.key] = p.value
            }
        }
        let number = numeric
        func text(_ v: TypedValue?) -> String? { if case .string(let s)? = v { s } else { nil } }
        func one(_ name: String, _ kind: MetricsText.Kind, _ help: String, unit: String? = nil, _ key: String, scale: Double = 1) {
            if let v = number(values[key]) { m.add(name, kind, help, unit: unit, labels: domainLabels, value: v * scale) }
        }

        var info = [domain, ("uuid", vm.uuid)]
        if let status = text(values["state.status"]) { info.append(("status", status)) }
        m.add("vmpulse_domain_info", .info, "The VM's identity and QEMU's run state; always 1.", labels: info, value: 1)
        one("libvirt_domain_info_vstate", .gauge, "Domain state as libvirt numbers it (1 running, 3 paused, 5 shut off, 6 crashed).", "state.state")
        one("libvirt_domain_info_cpu_time_seconds_total", .counter, "Amount of CPU time used by the domain, in seconds.", unit: "seconds", "cpu.time", scale: nanoseconds)
        one("libvirt_domain_info_cpu_user_seconds_total", .counter, "User CPU time of the domain's QEMU process, in seconds.", unit: "seconds", "cpu.user", scale: nanoseconds)
        one("libvirt_domain_info_cpu_system_seconds_total", .counter, "System CPU time of the domain's QEMU process, in seconds.", unit: "seconds", "cpu.system", scale: nanoseconds)
        one("libvirt_domain_info_maximum_memory_bytes", .gauge, "Maximum allowed memory of the domain, in bytes.", unit: "bytes", "balloon.maximum", scale: kibibytes)
        one("libvirt_domain_info_memory_usage_bytes", .gauge, "Memory usage of the domain (the balloon's size), in bytes.", unit: "bytes", "balloon.current", scale: kibibytes)
        one("libvirt_domain_info_virtual_cpus", .gauge, "Number of virtual CPUs for the domain.", "vcpu.current")
        one("libvirt_domain_memory_stats_rss_bytes", .gauge, "Resident memory of the domain's QEMU process, in bytes.", unit: "bytes", "balloon.rss", scale: kibibytes)
        one("libvirt_domain_memory_stats_available_bytes", .gauge, "Memory the guest sees, in bytes.", unit: "bytes", "balloon.available", scale: kibibytes)
        one("libvirt_domain_memory_stats_usable_bytes", .gauge, "Memory the guest could use without swapping, in bytes.", unit: "bytes", "balloon.usable", scale: kibibytes)
        one("libvirt_domain_memory_stats_unused_bytes", .gauge, "Memory left unused by the guest, in bytes.", unit: "bytes", "balloon.unused", scale: kibibytes)
        one("libvirt_domain_memory_stats_disk_cache_bytes", .gauge, "Guest memory used for caches, in bytes.", unit: "bytes", "balloon.disk_caches", scale: kibibytes)
        one("libvirt_domain_memory_stats_swap_in_bytes", .gauge, "Memory swapped in by the guest, in bytes.", unit: "bytes", "balloon.swap_in", scale: kibibytes)
        one("libvirt_domain_memory_stats_swap_out_bytes", .gauge, "Memory swapped out by the guest, in bytes.", unit: "bytes", "balloon.swap_out", scale: kibibytes)
        one("libvirt_domain_memory_stats_major_fault_total", .counter, "Page faults in the guest that needed disk I/O.", "balloon.major_fault")
        one("libvirt_domain_memory_stats_minor_fault_total", .counter, "Page faults in the guest that needed no disk I/O.", "balloon.minor_fault")

        m.add("vmpulse_domain_monitor_responsive", .gauge, "1 when the VM's monitor answered the last pass in time, 0 when it did not.",
              labels: domainLabels, value: vm.responsive ? 1 : 0)
        if let last = vm.lastAnswer {
            m.add("vmpulse_domain_stats_age_seconds", .gauge, "Seconds since the VM last answered (how old its figures are).", unit: "seconds",
                  labels: domainLabels, value: max(0, now - last))
        }

        for (n, keys) in (indexed["vcpu"] ?? [:]).sorted(by: { $0.key < $1.key }) {
            add(keys, sortedVcpu, labels: [domain, ("vcpu", String(n))], to: &m)
        }
        for (_, keys) in (indexed["net"] ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let name = text(keys["name"]) else { continue }
            add(keys, sortedNet, labels: [domain, ("target_device", name)], to: &m)
        }
        for (_, keys) in (indexed["block"] ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let name = text(keys["name"]) else { continue }
            add(keys, sortedBlock, labels: [domain, ("target_device", name), ("source_file", text(keys["path"]) ?? "")], to: &m)
        }
        for disk in vm.disks {
            addIO(disk, windows: vm.windows[disk.name], labels: domainLabels.adding("target_device", disk.name), to: &m)
        }
        for (_, keys) in (indexed["thin"] ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let name = text(keys["name"]) else { continue }
            let labels = [domain, ("target_device", name)]
            add(keys, sortedThin, labels: labels, to: &m)
            if let state = text(keys["state"]) {
                m.add("vmpulse_thin_state", .gauge, "A thin disk's state (unset, set, exceeded, extending, backoff, disabled): 1 for the current one.",
                      labels: labels + [("state", state)], value: 1)
            }
        }
    }

    /// `group.N.suffix` split in three, or nil for a key without an index. By hand over the
    /// bytes: `split` made an array per key, 7 % of the agent's CPU under back-to-back 500-VM scrapes
    /// (perf, `make bench-metrics`);
    /// the parts are short enough to be Swift's inline small strings.
    static func indexedKey(_ key: String) -> (String, Int, String)? {
        let u = key.utf8
        guard let dot = u.firstIndex(of: UInt8(ascii: ".")) else { return nil }
        var i = u.index(after: dot), n = 0, digits = 0
        while i != u.endIndex, u[i] >= UInt8(ascii: "0"), u[i] <= UInt8(ascii: "9") {
            guard digits < 9 else { return nil }  // no index that large: not an index
            n = n * 10 + Int(u[i] - UInt8(ascii: "0"))
            digits += 1
            i = u.index(after: i)
        }
        guard digits > 0, i != u.endIndex, u[i] == UInt8(ascii: "."), u.index(after: i) != u.endIndex else { return nil }
        return (String(key[..<dot]), n, String(key[u.index(after: i)...]))
    }

    /// A numeric key's value as Prometheus holds it (a float64; near 2^64 it rounds, never traps).
    static func numeric(_ v: TypedValue?) -> Double? {
        switch v {
        case .uint(let x)?: Double(x)
        case .int(let x)?: Double(x)
        case .double(let x)?: x
        default: nil
        }
    }

    static func add(_ keys: [String: TypedValue], _ table: [(key: String, value: Mapping)], labels pairs: [(String, String)], to m: inout MetricsText) {
        let labels = MetricsText.Labels(pairs)
        for (suffix, mapping) in table {
            guard let v = numeric(keys[suffix]) else { continue }
            m.add(mapping.name, mapping.kind, mapping.help, unit: mapping.unit, labels: labels, value: v * mapping.scale)
        }
    }

    /// The `io` group beyond what libvirt's block stats have: unmaps, invalid and failed
    /// requests by operation, idle time, and the 1 s / 1 min / 1 h windows. Read from the
    /// disk's reading and windows themselves, not from the `io.N.*` keys: rendering those
    /// keys and parsing them back was a fifth of a 500-VM scrape (perf, `make bench-metrics`).
    static func addIO(_ disk: DiskIOReading, windows: IOWindows?, labels: MetricsText.Labels, to m: inout MetricsText) {
        func counter(_ c: IOCounter) -> Double? { disk.unreported.contains(c) ? nil : Double(disk.counters[c]) }
        if let v = disk.idleTimeNs {
            m.add("vmpulse_block_idle_seconds", .gauge, "Time since a block device's last I/O, in seconds.", unit: "seconds", labels: labels, value: Double(v) * nanoseconds)
        }
        if let v = counter(.unmapBytes) {
            m.add("vmpulse_block_unmap_bytes_total", .counter, "Bytes discarded (unmapped) on a block device.", unit: "bytes", labels: labels, value: v)
        }
        if let v = counter(.unmapIOs) {
            m.add("vmpulse_block_unmap_requests_total", .counter, "Unmap requests completed by a block device.", labels: labels, value: v)
        }
        if let v = counter(.totalUnmapTimeNs) {
            m.add("vmpulse_block_unmap_time_seconds_total", .counter, "Total time spent on unmaps, in seconds.", unit: "seconds", labels: labels, value: v * nanoseconds)
        }
        let invalid: [IOCounter] = [.invalidReadIOs, .invalidWriteIOs, .invalidFlushIOs, .invalidUnmapIOs]
        let failed: [IOCounter] = [.readIOsError, .writeIOsError, .flushIOsError, .unmapIOsError]
        for i in operations.indices {
            let l = Fragments.operation[i]
            if let v = counter(invalid[i]) {
                m.add("vmpulse_block_invalid_requests_total", .counter, "Requests a block device refused as invalid, by operation.", labels: labels, extra: l, value: v)
            }
            if let v = counter(failed[i]) {
                m.add("vmpulse_block_failed_requests_total", .counter, "Requests that failed on a block device, by operation.", labels: labels, extra: l, value: v)
            }
        }
        guard let windows else { return }
        for (w, (_, seconds)) in IOWindows.windows.enumerated() {
            guard let f = windows.figures(window: seconds) else { continue }
            m.add("vmpulse_block_window_seconds", .gauge, "How much time a window really covers, in seconds.", unit: "seconds", labels: labels,
                  extra: Fragments.window[w], value: f.seconds)
            for (o, op) in [IOOperation.read, .write, .flush].enumerated() {
                let l = Fragments.windowOperation[w][o]
                if let v = f.latencyAvgNs[op] {
                    m.add("vmpulse_block_latency_average_seconds", .gauge, "Average latency of a block device's requests over a window, in seconds.",
                          unit: "seconds", labels: labels, extra: l, value: v * nanoseconds)
                }
                for (p, value) in [f.latencyP50Ns[op], f.latencyP99Ns[op]].enumerated() {
                    if let v = value {
                        m.add("vmpulse_block_latency_percentile_seconds", .gauge, "Latency percentile (p50, p99) of a block device's requests over a window (from QEMU's histograms), in seconds.",
                              unit: "seconds", labels: labels, extra: l + Fragments.percentile[p], value: Double(v) * nanoseconds)
                    }
                }
                if op != .flush, let v = f.queueDepthAvg[op] {
                    m.add("vmpulse_block_queue_depth", .gauge, "Average requests in flight on a block device over a window.", labels: labels, extra: l, value: v)
                }
            }
        }
    }

    /// The constant labels of the `io` series, escaped once (none of them needs escaping).
    enum Fragments {
        static let operation = operations.map { #",operation=""# + $0 + #"""# }
        static let window = IOWindows.windows.map { #",window=""# + $0.label + #"""# }
        static let windowOperation = window.map { w in ["read", "write", "flush"].map { w + #",operation=""# + $0 + #"""# } }
        static let percentile = [#",percentile="p50""#, #",percentile="p99""#]
    }
}
