import Foundation
import Testing
import VMPulseCore
import VMPulseTestSupport

/// A real Prometheus scraping an agent that watches two real guests.
@Suite(.serialized) struct PrometheusTests {
    static let mib: Double = 1_048_576

    static func metrics(_ agent: AgentProcess, accept: String? = nil) throws -> HTTPGet.Response {
        try HTTPGet.fetch(port: agent.port, path: "/metrics", headers: accept.map { ["Accept": $0] } ?? [:])
    }

    @Test func prometheusSeesWhatTheGuestsWroteAndPromtoolPassesTheOutput() async throws {
        let bed = try TestBed(prefix: "prom")
        defer { bed.shutdown() }
        var withNIC = GuestSpec(name: "prom-1")
        withNIC.tap = "vmpp\(String(UInt32.random(in: 0...0xFFFFFF), radix: 16))"  // for the interface series
        let guests = [try bed.launch(withNIC), try bed.launch(GuestSpec(name: "prom-2"))]
        for g in guests { try await g.waitReady() }
        let agent = try bed.agent(interval: 0.5, fullInterval: 1)
        try await agent.waitReady()
        try await Task.sleep(for: .seconds(2))

        // promtool's linter passes both formats.
        let plain = try Self.metrics(agent)
        #expect(plain.status == 200)
        #expect(plain.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true, "\(plain.headers)")
        let lint = try PrometheusServer.check(metrics: plain.body, directory: bed.directory)
        #expect(lint.status == 0, "promtool check metrics: \(lint.output)")
        #expect(plain.body.contains("libvirt_domain_block_stats_write_bytes_total{domain=\"prom-1\""))
        let open = try Self.metrics(agent, accept: "application/openmetrics-text; version=1.0.0")
        #expect(open.headers["content-type"]?.hasPrefix("application/openmetrics-text") == true)
        #expect(open.body.hasSuffix("# EOF\n"))

        let prometheus = try PrometheusServer(directory: bed.directory + "/prometheus", targets: [agent.address])
        defer { prometheus.stop() }
        try await prometheus.waitReady()
        let series = #"libvirt_domain_block_stats_write_bytes_total{target_device="drive0"}"#
        func written(at time: Double) throws -> [String: Double] {
            var byDomain: [String: Double] = [:]
            for s in try prometheus.query(series, at: time) { if let d = s.labels["domain"] { byDomain[d] = s.value } }
            return byDomain
        }
        // Wait for Prometheus to hold both guests' series.
        let deadline = ContinuousClock.now + .seconds(30)
        while try written(at: Date().timeIntervalSince1970).count < 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(500))
        }
        try await Task.sleep(for: .seconds(2))
        let t0 = Date().timeIntervalSince1970
        let before = try written(at: t0)
        #expect(before.count == 2, "\(before)")

        // The guests write 24 and 40 MiB, a MiB at a time, over a few seconds.
        let amounts = [24, 40]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (g, count) in zip(guests, amounts) {
                group.addTask {
                    let shell = try await g.shell()
                    _ = try await shell.check("i=0; while [ $i -lt \(count) ]; do dd if=/dev/zero of=/dev/vda bs=1M count=1 seek=$i oflag=direct 2>/dev/null; i=$((i+1)); sleep 0.1; done")
                    await shell.close()
                }
            }
            try await group.waitForAll()
        }
        try await Task.sleep(for: .seconds(4))
        let t1 = Date().timeIntervalSince1970
        let after = try written(at: t1)
        for (g, count) in zip(guests, amounts) {
            let delta = (after[g.name] ?? 0) - (before[g.name] ?? 0)
            #expect(delta == Double(count) * Self.mib, "\(g.name): Prometheus holds QEMU's counter, exactly")
            // The rate over the writing period, as a dashboard would chart it.
            let window = Int((t1 - t0).rounded(.up))
            let rate = try prometheus.query("rate(libvirt_domain_block_stats_write_bytes_total{domain=\"\(g.name)\",target_device=\"drive0\"}[\(window)s])", at: t1)
            let perSecond = try #require(rate.first?.value)
            let implied = perSecond * (t1 - t0)
            #expect(implied > 0.7 * Double(count) * Self.mib && implied < 1.4 * Double(count) * Self.mib,
                    "\(g.name): rate \(perSecond) B/s over \(window) s implies \(implied / Self.mib) MiB for \(count) MiB written")
        }
        #expect(try prometheus.query("up{job=\"vmpulse\"}").first?.value == 1)

        // The Grafana dashboard in contrib/ asks only for what the agent exports, in
        // queries Prometheus accepts; those of these guests' disks have data.
        let exported = Set(try Self.metrics(agent).body.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.map { String($0.split(separator: " ")[2]) })
        for expr in try Self.dashboardQueries() {
            let names = Self.metricNames(in: expr)
            #expect(!names.isEmpty, "\(expr)")
            for name in names where !name.hasPrefix("vmpulse_thin_") {
                #expect(exported.contains(name), "the dashboard asks for \(name), which the agent does not export")
            }
            let query = expr.replacingOccurrences(of: "$domain", with: "prom-.*").replacingOccurrences(of: "$__rate_interval", with: "30s")
                .replacingOccurrences(of: "$__range", with: "5m")
            let result = try prometheus.query(query, at: t1)
            if expr.contains("libvirt_domain_block_stats_write_bytes_total") { #expect(result.count >= 2, "\(query)") }
        }
        #expect(try await agent.stop() == 0)
    }

    /// Every `expr` of contrib/grafana/vmpulse-dashboard.json.
    static func dashboardQueries() throws -> [String] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try Data(contentsOf: root.appendingPathComponent("contrib/grafana/vmpulse-dashboard.json"))
        guard case .object(let dashboard) = try JSONParser.parse(Array(data)), case .array(let panels)? = dashboard["panels"] else {
            throw TestBedError("the dashboard has no panels")
        }
        let queries = panels.flatMap { $0["targets"]?.arrayValue ?? [] }.compactMap { $0["expr"]?.stringValue }
        guard queries.count >= 10 else { throw TestBedError("the dashboard has \(queries.count) queries") }
        return queries
    }

    /// The metric names in a PromQL expression (`libvirt_...` and `vmpulse_...` words).
    static func metricNames(in expr: String) -> [String] {
        var names: [String] = []
        var word = ""
        for c in expr + " " {
            if c.isLetter || c.isNumber || c == "_" { word.append(c); continue }
            if word.hasPrefix("libvirt_") || word.hasPrefix("vmpulse_") { names.append(word) }
            word = ""
        }
        return names
    }

    /// The value of an unlabelled series in an exposition.
    static func value(_ body: String, _ name: String) -> Double? {
        body.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
    }

    @Test func twoHundredConcurrentScrapesAreServedAndTheSamplerKeepsItsTicks() async throws {
        let bed = try TestBed(prefix: "promload")
        defer { bed.shutdown() }
        for i in 1...2 {
            var spec = GuestSpec(name: "load-\(i)")
            spec.paused = true
            try bed.launch(spec)
        }
        let agent = try bed.agent(interval: 0.5, fullInterval: 1)
        try await agent.waitReady()
        try await Task.sleep(for: .seconds(2))
        let first = try Self.metrics(agent).body
        let firstAt = ContinuousClock.now
        let started = ContinuousClock.now
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    await Task.detached { (try? Self.metrics(agent))?.status ?? 0 }.value
                }
            }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        let elapsed = ContinuousClock.now - started
        #expect(statuses.count == 200 && statuses.allSatisfy { $0 == 200 }, "\(Dictionary(grouping: statuses) { $0 }.mapValues(\.count))")
        try await Task.sleep(for: .seconds(2))
        let last = try Self.metrics(agent).body
        let ticks = (Self.value(last, "vmpulse_agent_ticks_total") ?? 0) - (Self.value(first, "vmpulse_agent_ticks_total") ?? 0)
        // The window between the two readings, exactly (it holds the scrapes and the 2 s after).
        let window = ContinuousClock.now - firstAt
        let seconds = Double(window.components.seconds) + Double(window.components.attoseconds) / 1e18
        #expect(ticks >= (seconds / 0.5) - 3, "\(ticks) ticks in about \(seconds) s at 0.5 s (scrapes took \(elapsed))")
        #expect(Self.value(last, "vmpulse_agent_skipped_passes_total") == Self.value(first, "vmpulse_agent_skipped_passes_total"),
                "no VM was still in its pass at a tick while the scrapes ran")
        #expect(try await agent.stop() == 0)
    }

    @Test func aStoppedQEMUIsMarkedStaleAndTheScrapeAnswersAtOnce() async throws {
        let bed = try TestBed(prefix: "promstale")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "stuck")
        spec.paused = true
        let stuck = try bed.launch(spec)
        spec = GuestSpec(name: "fine")
        spec.paused = true
        _ = try bed.launch(spec)
        let agent = try bed.agent(interval: 0.5, fullInterval: 1)
        try await agent.waitReady()
        try await Task.sleep(for: .seconds(2))
        kill(stuck.pid, SIGSTOP)
        defer { kill(stuck.pid, SIGCONT) }
        let deadline = ContinuousClock.now + .seconds(30)
        var body = ""
        while ContinuousClock.now < deadline {
            let started = ContinuousClock.now
            body = try Self.metrics(agent).body
            #expect(ContinuousClock.now - started < .seconds(1), "a scrape never waits on a stuck QEMU")
            if body.contains(#"vmpulse_domain_monitor_responsive{domain="stuck"} 0"#) { break }
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(body.contains(#"vmpulse_domain_monitor_responsive{domain="stuck"} 0"#))
        #expect(body.contains(#"vmpulse_domain_monitor_responsive{domain="fine"} 1"#))
        let unknown = try HTTPGet.fetch(port: agent.port, path: "/metrics/../../etc/passwd")
        #expect(unknown.status == 404)
        #expect(!unknown.body.contains("root:") && !unknown.body.contains("Sources/"), "\(unknown.body)")
        kill(stuck.pid, SIGCONT)
        #expect(try await agent.stop() == 0)
    }
}
