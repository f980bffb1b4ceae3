@testable import API
@testable import Agent
@testable import Hypervisor
import Testing
import VMPulseCore

/// The panel's JSON, from snapshots: rows, charts with gaps, thin disks by owner, and events
/// that stay one line whatever a VM is called.
@Suite struct PanelDataTests {
    static func vm(_ name: String, machine: String, uuid: String, writesPerSecond: UInt64) -> VMSnapshot {
        var windows = IOWindows()
        var counters = BlockCounters()
        for t in 0...10 {
            counters[.writeIOs] = writesPerSecond * UInt64(t)
            counters[.writeBytes] = writesPerSecond * UInt64(t) * 65_536
            counters[.totalWriteTimeNs] = writesPerSecond * UInt64(t) * 1_000_000
            windows.record(IOSample(time: 1000 + Double(t), counters: counters))
        }
        let disk = DiskIOReading(name: "drive0", path: "/img/\(name).qcow2", counters: counters, histograms: [:], idleTimeNs: nil, allocation: 0)
        return VMSnapshot(machine: machine, name: name, uuid: uuid, full: [StatsParam("state.state", .int(1))], disks: [disk],
                          windows: ["drive0": windows], responsive: true, errors: [], lastAnswer: 1010)
    }

    static func thin(_ label: String, vmUUID: String) -> ThinDiskStatus {
        ThinDiskStatus(label: label, vm: "x", vmName: "x", vmUUID: vmUUID, drive: "drive0", node: nil, state: "set", reason: nil, mark: 1 << 30,
                       physical: 2 << 30, maximum: 8 << 30, extensions: 3, failures: 0, pausesRecovered: 0, pausedForSpace: false,
                       lastExtensionMs: 12.5, lastCycleMs: 14, recentCyclesMs: [])
    }

    @Test func rowsAreSortedByNameWithTheirLastMinutesRates() throws {
        let vms = [Self.vm("b", machine: "/s/b.sock", uuid: "u1", writesPerSecond: 10), Self.vm("a", machine: "/s/a.sock", uuid: "u1", writesPerSecond: 0)]
        let overview = PanelData.overview(vms, book: nil, thin: [Self.thin("t", vmUUID: "u1")], now: 1010.5, wallNow: 5000, interval: 1)
        let rows = try #require(overview["vms"]?.arrayValue)
        #expect(rows.map { $0["id"] } == ["/s/a.sock", "/s/b.sock"], "two VMs with one UUID are two rows, keyed by machine")
        #expect(rows[1]["writeBps"] == .double(655_360) && rows[1]["writeIops"] == .double(10))
        #expect(rows[1]["statsAge"] == .double(0.5) && rows[1]["status"] == "Up")
        #expect(overview["interval"] == .double(1))
    }

    @Test func aChartHasATimeColumnInUnixSecondsAndNullWhereThereWasNoOperation() throws {
        let idle = Self.vm("idle", machine: "/s/i.sock", uuid: "u2", writesPerSecond: 0)
        let detail = PanelData.detail(idle, book: nil, thin: [Self.thin("mine", vmUUID: "u2"), Self.thin("other", vmUUID: "u3")], now: 1010, wallNow: 5000)
        let chart = try #require(detail["disks"]?.arrayValue?.first?["chart"])
        let times = try #require(chart["time"]?.arrayValue)
        #expect(times.count == 10 && times.last == .double(5000) && times.first == .double(4991))
        #expect(chart["writeLatencyMs"]?.arrayValue?.allSatisfy { $0 == .null } == true, "no write, no latency (not 0)")
        #expect(chart["writeBps"]?.arrayValue?.allSatisfy { $0 == .double(0) } == true)
        #expect(chart["writeP99Ms"]?.arrayValue?.allSatisfy { $0 == .null } == true, "no histogram")
        #expect(detail["thin"]?.arrayValue?.count == 1, "only the VM's own thin disk")
        #expect(detail["thin"]?.arrayValue?.first?["extensions"] == .int(3))
        let windows = try #require(detail["disks"]?.arrayValue?.first?["windows"])
        #expect(windows["1s"] != nil && windows["1m"] != nil && windows["1h"] != nil)
    }

    @Test func anEventIsOneDataLineWhateverTheVMIsCalled() {
        let name = "a\nevent: vm\ndata: {}\n\nb\r\u{2028}"
        let vm = Self.vm(name, machine: "/s/odd.sock", uuid: "u4", writesPerSecond: 1)
        let frame = PanelStream.frame("overview", PanelData.overview([vm], book: nil, thin: [], now: 1010, wallNow: 5000, interval: 1))
        let lines = frame.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 4 && lines[0] == "event: overview" && lines[1].hasPrefix("data: ") && lines[2].isEmpty && lines[3].isEmpty, "\(lines)")
        #expect(!lines[1].contains("\r"))
    }
}
