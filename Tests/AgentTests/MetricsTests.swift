@testable import API
@testable import Agent
@testable import Hypervisor
import Testing
import VMPulseCore

/// `/metrics` rendered from snapshots: names, units, HELP and TYPE, escaping, both formats,
/// counters as QEMU's absolute values across a reset, and VMs that go away.
@Suite struct MetricsTests {
    static func vm(_ name: String, uuid: String = "11111111-2222-3333-4444-555555555555", readBytes: UInt64 = 512,
                   responsive: Bool = true, lastAnswer: Double? = MonotonicTime.now() - 0.5) -> VMSnapshot {
        let full = [StatsParam("state.state", .int(1)), StatsParam("state.status", .string("running")),
                    StatsParam("cpu.time", .uint(5_000_000_000)), StatsParam("balloon.maximum", .uint(2048)),
                    StatsParam("vcpu.current", .uint(2)), StatsParam("vcpu.0.time", .uint(1_500_000_000)),
                    StatsParam("net.count", .uint(1)), StatsParam("net.0.name", .string("tap0")), StatsParam("net.0.rx.bytes", .uint(77)),
                    StatsParam("block.count", .uint(1)), StatsParam("block.0.name", .string("drive0")),
                    StatsParam("block.0.path", .string("/img/a.qcow2")), StatsParam("block.0.rd.bytes", .uint(readBytes)),
                    StatsParam("block.0.wr.times", .uint(2_500_000_000))]
        return VMSnapshot(machine: "/run/\(name).sock", name: name, uuid: uuid, full: full, responsive: responsive, errors: [],
                          lastAnswer: lastAnswer)
    }

    static func render(_ vms: [VMSnapshot], extra: [StatsParam] = [], accept: String? = nil, now: Double = MonotonicTime.now()) -> String {
        MetricsEndpoint.answer(snapshot: vms, now: now, thin: { _, _ in extra }, ledger: LedgerStatus(), sampler: SamplerHealth(),
                               hostError: nil, identityConflicts: 0, interval: 1, accept: accept).body
    }

    /// The value of the one sample line that starts with `series` (name and labels).
    static func sample(_ text: String, _ series: String) -> String? {
        let lines = text.split(separator: "\n").filter { $0.hasPrefix(series + " ") }
        return lines.count == 1 ? String(lines[0].dropFirst(series.count + 1)) : nil
    }

    @Test func heartbeatLinksHaveTheirStateAndCounters() {
        var a = LinkStatus(name: "to-b", kind: "peer", target: "host-b@10.0.0.2:9791", detector: "fixed 5.0 s", since: 0)
        a.state = .dead
        a.suspicion = 6.5
        a.lastPulse = 90
        a.pulses = .max
        a.rejected = 7
        a.replayed = 5
        a.forged = 2
        a.actionsRun = 3
        a.actionsFailed = 1
        var b = LinkStatus(name: "db \"guest\"", kind: "guest", target: "db01", detector: "phi 8.0", since: 0)
        b.suspicion = .infinity
        let text = MetricsEndpoint.answer(snapshot: [], now: 100, thin: { _, _ in [] }, ledger: LedgerStatus(), sampler: SamplerHealth(),
                                          hostError: nil, identityConflicts: 0, interval: 1, accept: nil, heartbeat: [a, b]).body
        let l = "{link=\"to-b\",kind=\"peer\""
        #expect(Self.sample(text, "vmpulse_heartbeat_link_state\(l),state=\"dead\"}") == "1")
        #expect(Self.sample(text, "vmpulse_heartbeat_link_state\(l),state=\"alive\"}") == "0")
        #expect(Self.sample(text, "vmpulse_heartbeat_suspicion\(l)}") == "6.5")
        #expect(Self.sample(text, "vmpulse_heartbeat_last_pulse_age_seconds\(l)}") == "10")
        #expect(Self.sample(text, "vmpulse_heartbeat_pulses_total\(l)}") == "1.8446744073709552e+19")
        #expect(Self.sample(text, "vmpulse_heartbeat_replayed_frames_total\(l)}") == "5")
        #expect(Self.sample(text, "vmpulse_heartbeat_forged_frames_total\(l)}") == "2")
        #expect(Self.sample(text, "vmpulse_heartbeat_failed_actions_total\(l)}") == "1")
        let g = "{link=\"db \\\"guest\\\"\",kind=\"guest\""
        #expect(Self.sample(text, "vmpulse_heartbeat_link_state\(g),state=\"alive\"}") == "1", "a quote in a link's name is escaped")
        #expect(Self.sample(text, "vmpulse_heartbeat_suspicion\(g)}")?.contains("e+308") == true, "no +Inf from an endless silence")
        #expect(!text.contains("vmpulse_heartbeat_last_pulse_age_seconds\(g)"), "no age before the first pulse")
        #expect(text.components(separatedBy: "# TYPE vmpulse_heartbeat_link_state gauge").count == 2, "one family for both links")
    }

    @Test func libvirtNamesInPrometheusUnits() {
        let text = Self.render([Self.vm("a")])
        let disk = #"{domain="a",target_device="drive0",source_file="/img/a.qcow2"}"#
        #expect(Self.sample(text, "libvirt_domain_block_stats_read_bytes_total" + disk) == "512")
        #expect(Self.sample(text, "libvirt_domain_block_stats_write_time_seconds_total" + disk) == "2.5", "ns to seconds")
        #expect(Self.sample(text, #"libvirt_domain_info_cpu_time_seconds_total{domain="a"}"#) == "5")
        #expect(Self.sample(text, #"libvirt_domain_info_maximum_memory_bytes{domain="a"}"#) == "2097152", "KiB to bytes")
        #expect(Self.sample(text, #"libvirt_domain_vcpu_time_seconds_total{domain="a",vcpu="0"}"#) == "1.5")
        #expect(Self.sample(text, #"libvirt_domain_interface_stats_receive_bytes_total{domain="a",target_device="tap0"}"#) == "77")
        #expect(Self.sample(text, #"vmpulse_domain_info{domain="a",uuid="11111111-2222-3333-4444-555555555555",status="running"}"#) == "1")
        #expect(Self.sample(text, #"vmpulse_domain_monitor_responsive{domain="a"}"#) == "1")
        #expect(Self.sample(text, "vmpulse_agent_vms") == "1")
    }

    @Test func everyFamilyHasHelpAndTypeOnceBeforeItsSamples() {
        let text = Self.render([Self.vm("a"), Self.vm("b", uuid: "66666666-2222-3333-4444-555555555555")])
        var declared: [String: String] = [:]
        var seen: [String] = []
        var current: String?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                let name = String(line.split(separator: " ")[2])
                #expect(declared[name] == nil, "\(name) declared twice")
                current = name
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                #expect(String(parts[2]) == current)
                declared[String(parts[2])] = String(parts[3])
            } else {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                #expect(name == current, "\(name) is outside its family")
                if seen.last != name { #expect(!seen.contains(name), "\(name)'s samples are split"); seen.append(name) }
            }
        }
        #expect(declared["libvirt_domain_block_stats_read_bytes_total"] == "counter")
        #expect(declared["libvirt_domain_info_maximum_memory_bytes"] == "gauge")
        #expect(declared.keys.allSatisfy { $0.hasPrefix("libvirt_") || $0.hasPrefix("vmpulse_") })
    }

    @Test func labelValuesAreEscaped() {
        let name = "we\"ird\\name\nsecond line"
        let text = Self.render([Self.vm(name)])
        #expect(Self.sample(text, #"vmpulse_domain_monitor_responsive{domain="we\"ird\\name\nsecond line"}"#) == "1", "\(text.prefix(600))")
        #expect(!text.contains("\nsecond line"), "no raw line feed from a label")
        #expect(MetricsText.escape("a\r\nb") == "a\r\\nb")
    }

    @Test func countersAreQEMUsAbsoluteValuesAndGoneVMsAreGone() {
        let series = #"libvirt_domain_block_stats_read_bytes_total{domain="a",target_device="drive0",source_file="/img/a.qcow2"}"#
        // Near 2^64: a float64, as every Prometheus value is, never a trap.
        #expect(Self.sample(Self.render([Self.vm("a", readBytes: UInt64.max)]), series).flatMap(Double.init) == Double(UInt64.max))
        // A new QEMU process starts from zero: the series drops, which rate() reads as a reset.
        #expect(Self.sample(Self.render([Self.vm("a", readBytes: 4096)]), series) == "4096")
        let without = Self.render([Self.vm("b", uuid: "66666666-2222-3333-4444-555555555555")])
        #expect(!without.contains(#"domain="a""#), "a VM that went away has no series left")
    }

    @Test func twoVMsWithOneNameOrOneUUIDNeverShareASeries() {
        let same = "77777777-2222-3333-4444-555555555555"
        var twin = Self.vm("dup", uuid: same)
        twin.machine = "/run/dup-2.sock"
        let text = Self.render([Self.vm("dup", uuid: same), twin, Self.vm("dup"), Self.vm("solo", uuid: "88888888-2222-3333-4444-555555555555")])
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("vmpulse_domain_monitor_responsive{") }
        #expect(Set(lines).count == 4, "\(lines)")
        #expect(lines.contains(#"vmpulse_domain_monitor_responsive{domain="dup (11111111-2222-3333-4444-555555555555)"} 1"#))
        #expect(lines.contains(#"vmpulse_domain_monitor_responsive{domain="dup (/run/dup-2.sock)"} 1"#))
        #expect(lines.contains(#"vmpulse_domain_monitor_responsive{domain="solo"} 1"#))
        let series = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { $0.split(separator: " ").dropLast().joined(separator: " ") }
        #expect(Set(series).count == series.count, "no series twice")
    }

    @Test func aStaleVMIsMarked() {
        let now = MonotonicTime.now()
        let text = Self.render([Self.vm("a", responsive: false, lastAnswer: now - 42)], now: now)
        #expect(Self.sample(text, #"vmpulse_domain_monitor_responsive{domain="a"}"#) == "0")
        #expect(Self.sample(text, #"vmpulse_domain_stats_age_seconds{domain="a"}"#) == "42")
        let never = Self.render([Self.vm("a", responsive: false, lastAnswer: nil)])
        #expect(!never.contains("vmpulse_domain_stats_age_seconds{"), "no age for a VM that never answered")
    }

    @Test func windowsPercentilesAndThinDisks() throws {
        // A disk writing 100 times a second, 250 µs each, watched for 61 s, with a write histogram.
        var windows = IOWindows()
        var counters = BlockCounters([.invalidWriteIOs: 3, .flushIOsError: 2])
        let start = MonotonicTime.now() - 61
        for t in 0...61 {
            counters[.writeIOs] = 100 * UInt64(t)
            counters[.totalWriteTimeNs] = 100 * UInt64(t) * 250_000
            let histogram = LatencyHistogram(boundaries: [1_000_000, 10_000_000], bins: [0, 100 * UInt64(t), 0])
            windows.record(IOSample(time: start + Double(t), counters: counters, histograms: [.write: histogram]))
        }
        var vm = Self.vm("a")
        vm.disks = [DiskIOReading(name: "drive0", path: "/img/a.qcow2", counters: counters, histograms: [:], idleTimeNs: 5_000_000_000, allocation: 0)]
        vm.windows = ["drive0": windows]
        let extra = [StatsParam("thin.count", .uint(1)), StatsParam("thin.0.name", .string("drive1")), StatsParam("thin.0.state", .string("set")),
                     StatsParam("thin.0.physical", .uint(1 << 30)), StatsParam("thin.0.extensions", .uint(4)),
                     StatsParam("thin.0.last_extension_ms", .double(125))]
        let text = Self.render([vm], extra: extra)
        let d = #"domain="a",target_device="drive0""#
        #expect(Self.sample(text, "vmpulse_block_latency_average_seconds{\(d),window=\"1m\",operation=\"write\"}") == "0.00025")
        let p99 = try #require(windows.figures(window: 1)?.latencyP99Ns[.write])
        #expect(p99 > 1_000_000 && p99 <= 10_000_000)
        #expect(Self.sample(text, "vmpulse_block_latency_percentile_seconds{\(d),window=\"1s\",operation=\"write\",percentile=\"p99\"}")
                == MetricsText.number(Double(p99) * 1e-9))
        #expect(Self.sample(text, "vmpulse_block_queue_depth{\(d),window=\"1h\",operation=\"write\"}") == "0.025")
        #expect(Self.sample(text, "vmpulse_block_invalid_requests_total{\(d),operation=\"write\"}") == "3")
        #expect(Self.sample(text, "vmpulse_block_failed_requests_total{\(d),operation=\"flush\"}") == "2")
        #expect(Self.sample(text, "vmpulse_block_window_seconds{\(d),window=\"1h\"}") == "61")
        #expect(Self.sample(text, "vmpulse_block_idle_seconds{\(d)}") == "5")
        #expect(text.contains("vmpulse_block_unmap_bytes_total{\(d)} 0"), "QEMU reports unmaps: a zero is a value")
        // libvirt reports no unmap, invalid or failed operations: they are left out, not zero.
        vm.disks[0].unreported = [.unmapBytes, .invalidWriteIOs]
        let partial = Self.render([vm])
        #expect(!partial.contains("vmpulse_block_unmap_bytes_total{") && !partial.contains("operation=\"write\"} 3"))
        let t = #"domain="a",target_device="drive1""#
        #expect(Self.sample(text, "vmpulse_thin_state{\(t),state=\"set\"}") == "1")
        #expect(Self.sample(text, "vmpulse_thin_physical_bytes{\(t)}") == "1073741824")
        #expect(Self.sample(text, "vmpulse_thin_extensions_total{\(t)}") == "4")
        #expect(Self.sample(text, "vmpulse_thin_last_extension_seconds{\(t)}") == "0.125")
    }

    @Test func openMetricsWhenAsked() {
        let answer = MetricsEndpoint.answer(snapshot: [Self.vm("a")], now: MonotonicTime.now(), thin: { _, _ in [] }, ledger: LedgerStatus(),
                                            sampler: SamplerHealth(), hostError: nil, identityConflicts: 0, interval: 1,
                                            accept: "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        #expect(answer.contentType.hasPrefix("application/openmetrics-text"))
        let text = answer.body
        #expect(text.hasSuffix("# EOF\n"))
        #expect(text.contains("# TYPE libvirt_domain_block_stats_read_bytes counter\n# UNIT libvirt_domain_block_stats_read_bytes bytes\n"))
        #expect(text.contains("# TYPE vmpulse_domain info\n"))
        #expect(text.contains("\nlibvirt_domain_block_stats_read_bytes_total{"))
        let plain = MetricsEndpoint.answer(snapshot: [], now: 0, thin: { _, _ in [] }, ledger: LedgerStatus(), sampler: SamplerHealth(),
                                           hostError: nil, identityConflicts: 0, interval: 1, accept: "text/plain")
        #expect(plain.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(!plain.body.contains("# EOF"))
    }

    @Test func numbersAreWrittenExactly() {
        #expect(MetricsText.number(0) == "0")
        #expect(MetricsText.number(1e15) == "1000000000000000")
        #expect(MetricsText.number(0.5) == "0.5")
        #expect(MetricsText.number(.nan) == "NaN")
        #expect(MetricsText.number(-.infinity) == "-Inf")
    }

    /// The scrape written in two tasks has the same samples, each family once and whole.
    @Test func writtenInPartsItIsTheSameExposition() async {
        let vms = (0..<120).map { Self.vm("vm-\($0)", uuid: "u-\($0)", readBytes: UInt64($0)) } + [Self.vm("vm-7", uuid: "u-dup")]
        let now = MonotonicTime.now()
        let one = MetricsEndpoint.answer(snapshot: vms, now: now, thin: { _, _ in [] }, ledger: LedgerStatus(), sampler: SamplerHealth(),
                                         hostError: nil, identityConflicts: 0, interval: 1, accept: nil).body
        let two = await MetricsEndpoint.answer(snapshot: vms, now: now, thin: { _, _ in [] }, ledger: LedgerStatus(), sampler: SamplerHealth(),
                                               hostError: nil, identityConflicts: 0, interval: 1, accept: nil, parts: 2).body
        #expect(one.split(separator: "\n").sorted() == two.split(separator: "\n").sorted())
        var seen: [String] = []
        for line in two.split(separator: "\n") where !line.hasPrefix("#") {
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            if seen.last != name {
                #expect(!seen.contains(name), "\(name)'s samples are together")
                seen.append(name)
            }
        }
        #expect(two.contains(#"domain="vm-7 (u-dup)""#) && two.contains(#"domain="vm-7 (u-7)""#), "duplicate names stay apart across parts")
    }
}
