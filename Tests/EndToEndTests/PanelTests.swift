import Foundation
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The panel at `GET /`, in a real headless Chromium, from an agent watching real guests.
@Suite(.serialized) struct PanelTests {
    /// A name that would inject markup if the panel parsed names as HTML.
    static let oddName = "odd\"quote\\back\nline <img src=x onerror=window.pwned=1>"
    static let mib = 1_048_576.0

    /// The screenshot is kept here (`.build/artefacts/panel.png`) after the test.
    static var artefacts: String {
        ProcessInfo.processInfo.environment["VMPULSE_ARTEFACTS"] ?? FileManager.default.currentDirectoryPath + "/.build/artefacts"
    }

    static func literal(_ s: String) -> String { JSONText.serialize(.string(s)) }

    @Test func chromiumDrawsAGuestsWritesAndTheLiveUpdateMovesThem() async throws {
        let bed = try TestBed(prefix: "panel")
        defer { bed.shutdown() }
        let writer = try bed.launch(GuestSpec(name: "panel-1"))
        var odd = GuestSpec(name: "panel-2")
        odd.paused = true
        odd.extraArguments = ["-name", "guest=" + Self.oddName]  // QEMU takes the last -name
        _ = try bed.launch(odd)
        try await writer.waitReady()
        let agent = try bed.agent(interval: 0.5, fullInterval: 1)
        try await agent.waitReady()

        // The VM list, as the panel reads it, once the agent has seen both VMs.
        var rows: [JSONValue] = []
        let seen = ContinuousClock.now + .seconds(20)
        while rows.count < 2, ContinuousClock.now < seen {
            try await Task.sleep(for: .milliseconds(200))
            rows = try JSONParser.parse(Array(try HTTPGet.fetch(port: agent.port, path: "/v1/panel").body.utf8))["vms"]?.arrayValue ?? []
        }
        #expect(rows.count == 2)
        let id = try #require(rows.first { $0["name"] == "panel-1" }?["id"]?.stringValue)
        #expect(rows.contains { $0["name"] == .string(Self.oddName) }, "the odd name reaches the panel as it is: \(rows)")
        let query = "/v1/panel/vm?id=" + (id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id)
        // The writes start once the agent holds a sample of the disk, so that the chart sees them all.
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let detail = try JSONParser.parse(Array(try HTTPGet.fetch(port: agent.port, path: query).body.utf8))
            if (detail["disks"]?.arrayValue?.first?["chart"]?["time"]?.arrayValue?.count ?? 0) >= 2 { break }
            try await Task.sleep(for: .milliseconds(200))
        }

        // The guest writes 32 MiB, a MiB at a time.
        let shell = try await writer.shell()
        _ = try await shell.check("i=0; while [ $i -lt 32 ]; do dd if=/dev/zero of=/dev/vda bs=1M count=1 seek=$i oflag=direct 2>/dev/null; i=$((i+1)); sleep 0.05; done")
        await shell.close()
        try await Task.sleep(for: .seconds(1.5))

        let fragment = id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id
        let browser = try HeadlessChromium(url: "http://127.0.0.1:\(agent.port)/#vm=\(fragment)", directory: bed.directory + "/chromium")
        defer { browser.stop() }
        try await browser.waitListening()
        let oddName = Self.literal(Self.oddName)
        let png = try await browser.withPage { page -> Data in
            let throughput = "document.querySelector('svg[data-chart=throughput] path[data-series=write]')"
            try await page.wait(until: "window.vmpulsePanel && window.vmpulsePanel.vmUpdates > 0 && \(throughput)")

            // The write chart holds the points of the writes: the bytes under its line are what the guest wrote.
            let points = try await page.evaluate("Number(\(throughput).dataset.points)")
            #expect((points.doubleValue ?? 0) >= 5, "points on the write chart: \(points)")
            let aboveZero = try await page.evaluate("""
                (() => { const d = \(throughput).getAttribute('d'); const ys = [...d.matchAll(/[ML][0-9.]+ ([0-9.]+)/g)].map(m => Number(m[1]));
                  const base = Math.max(...ys); return ys.filter(y => y < base - 1).length; })()
                """)
            #expect((aboveZero.doubleValue ?? 0) >= 1, "the write line rises above zero: \(aboveZero)")
            let written = try await page.evaluate("""
                (() => { const c = window.vmpulsePanel.vm.disks[0].chart; let sum = 0;
                  for (let i = 1; i < c.time.length; i++) sum += (c.writeBps[i] || 0) * (c.time[i] - c.time[i - 1]); return sum; })()
                """)
            let bytes = written.doubleValue ?? 0
            #expect(abs(bytes - 32 * Self.mib) < 0.02 * 32 * Self.mib, "the chart's writes add up to \(bytes / Self.mib) MiB for 32 MiB written")
            for kind in ["iops", "latency", "queue", "p99"] {
                #expect(try await page.evaluate("Boolean(document.querySelector('svg[data-chart=\(kind)]'))") == .bool(true), "a \(kind) chart")
            }
            #expect(try await page.evaluate("document.querySelectorAll('table.windows tr[data-window]').length") .doubleValue ?? 0 >= 2,
                    "the windows table shows the 1 s and 1 min windows at least")

            // The live update moves the charts on, without a reload.
            let before = try await page.evaluate("({t: Number(document.querySelector('svg[data-chart=throughput]').dataset.lastTime), n: window.vmpulsePanel.vmUpdates, d: \(throughput).getAttribute('d')})")
            try await Task.sleep(for: .seconds(2.5))
            let after = try await page.evaluate("({t: Number(document.querySelector('svg[data-chart=throughput]').dataset.lastTime), n: window.vmpulsePanel.vmUpdates, d: \(throughput).getAttribute('d')})")
            #expect((after["t"]?.doubleValue ?? 0) > (before["t"]?.doubleValue ?? 0) + 1, "the chart's last point moved: \(before["t"] ?? .null) -> \(after["t"] ?? .null)")
            #expect((after["n"]?.doubleValue ?? 0) >= (before["n"]?.doubleValue ?? 0) + 3, "updates arrived: \(before["n"] ?? .null) -> \(after["n"] ?? .null)")
            #expect(after["d"] != before["d"], "the line was redrawn")

            // The odd name is text, in the list and in the detail: no element came of it and no script ran.
            let names = try await page.evaluate("[...document.querySelectorAll('#vms td.name')].map(td => td.textContent)")
            #expect(names == .array([.string(Self.oddName), .string("panel-1")]), "\(names)")
            #expect(try await page.evaluate("document.querySelectorAll('img').length") == .int(0))
            _ = try await page.evaluate("[...document.querySelectorAll('#vms tbody tr')].find(tr => tr.querySelector('td.name').textContent === \(oddName)).click()")
            try await page.wait(until: "document.getElementById('vm-name') && document.getElementById('vm-name').textContent === \(oddName)")
            #expect(try await page.evaluate("document.querySelectorAll('img').length + (window.pwned ? 100 : 0)") == .int(0))

            // Search and sort, as an operator with many VMs uses them.
            _ = try await page.evaluate("(() => { const s = document.getElementById('search'); s.value = 'PANEL-1'; s.dispatchEvent(new Event('input')); })()")
            #expect(try await page.evaluate("document.getElementById('count').textContent") == "1 of 2 VMs")
            _ = try await page.evaluate("(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); document.querySelector('th[data-sort=name]').click(); })()")
            let sorted = try await page.evaluate("[...document.querySelectorAll('#vms td.name')].map(td => td.textContent)")
            #expect(sorted == .array([.string("panel-1"), .string(Self.oddName)]), "a second click on Name sorts down: \(sorted)")

            // Back to the writer for the screenshot.
            _ = try await page.evaluate("[...document.querySelectorAll('#vms tbody tr')].find(tr => tr.querySelector('td.name').textContent === 'panel-1').click()")
            try await page.wait(until: "document.getElementById('vm-name') && document.getElementById('vm-name').textContent === 'panel-1' && \(throughput)")
            return try await page.screenshot()
        }
        #expect(png.count > 10_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "a PNG of \(png.count) bytes")
        try FileManager.default.createDirectory(atPath: Self.artefacts, withIntermediateDirectories: true)
        try png.write(to: URL(fileURLWithPath: Self.artefacts + "/panel.png"))

        // The same name in /metrics: escaped as the text format says, and promtool takes it.
        let metrics = try HTTPGet.fetch(port: agent.port, path: "/metrics").body
        #expect(metrics.contains(#"domain="odd\"quote\\back\nline <img src=x onerror=window.pwned=1>""#))
        let lint = try PrometheusServer.check(metrics: metrics, directory: bed.directory)
        #expect(lint.status == 0, "promtool check metrics: \(lint.output)")
    }

    /// 100 VMs (the QMP simulator, a fake peer replaying one real paused guest's replies, since
    /// this machine cannot boot 100 guests for one test): the list shows them all, and search,
    /// sort and choosing a row work on it while it updates.
    @Test func aHundredVMsCanBeSearchedSortedAndChosen() async throws {
        let bed = try TestBed(prefix: "panel100")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "model")
        spec.paused = true
        let model = try bed.launch(spec)
        let simulated = bed.directory + "/simulated"
        try FileManager.default.createDirectory(atPath: simulated, withIntermediateDirectories: true)
        let simulator = try await QMPSimulator.start(directory: simulated, count: 100, replies: .model(model.controlSocket))
        let agent = try AgentProcess(socketDirectory: simulated, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     interval: 1, fullInterval: 5)
        let browser = try HeadlessChromium(url: "http://127.0.0.1:\(agent.port)/", directory: bed.directory + "/chromium")
        defer { browser.stop() }
        try await agent.waitReady()
        try await browser.waitListening()
        let png = try await browser.withPage { page -> Data in
            try await page.wait(until: "document.getElementById('count').textContent === '100 of 100 VMs'", timeout: .seconds(60))
            let first = try await page.evaluate("document.querySelector('#vms tbody tr td.name').textContent")
            #expect(first == "sim-0", "sorted by name: \(first)")
            let natural = try await page.evaluate("(() => { const n = [...document.querySelectorAll('#vms td.name')].map(td => td.textContent); return n.indexOf('sim-10') - n.indexOf('sim-9'); })()")
            #expect(natural == .int(1), "names in natural order: sim-9 just before sim-10")
            _ = try await page.evaluate("(() => { const s = document.getElementById('search'); s.value = 'sim-42'; s.dispatchEvent(new Event('input')); })()")
            #expect(try await page.evaluate("document.getElementById('count').textContent") == "1 of 100 VMs")
            // The filter holds across live updates.
            let seen = try await page.evaluate("window.vmpulsePanel.updates")
            try await page.wait(until: "window.vmpulsePanel.updates >= \(seen.int64Value ?? 0) + 2")
            #expect(try await page.evaluate("[...document.querySelectorAll('#vms td.name')].map(td => td.textContent)") == ["sim-42"])
            _ = try await page.evaluate("(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); document.querySelector('th[data-sort=name]').click(); })()")
            #expect(try await page.evaluate("document.querySelector('#vms tbody tr td.name').textContent") == "sim-99", "a second click on Name sorts down")
            _ = try await page.evaluate("[...document.querySelectorAll('#vms tbody tr')].find(tr => tr.querySelector('td.name').textContent === 'sim-7').click()")
            try await page.wait(until: "document.getElementById('vm-name') && document.getElementById('vm-name').textContent === 'sim-7'")
            #expect(try await page.evaluate("document.querySelectorAll('#vms tbody tr.chosen').length") == .int(1))
            return try await page.screenshot()
        }
        try FileManager.default.createDirectory(atPath: Self.artefacts, withIntermediateDirectories: true)
        try png.write(to: URL(fileURLWithPath: Self.artefacts + "/panel-100.png"))
        try await agent.stop()
        await simulator.stop()
    }
}
