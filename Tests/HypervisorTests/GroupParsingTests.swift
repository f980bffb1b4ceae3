import Glibc
@testable import Hypervisor
import QMP
import Testing
import VMPulseCore

/// Replies that do not match QEMU's schema must become errors naming the bad member.
@Suite struct GroupParsingTests {
    let goodStats: JSONValue = [
        "device": "drive0", "node-name": "fmt0", "qdev": "/machine/peripheral/disk0/virtio-backend",
        "stats": ["rd_operations": 2, "rd_bytes": 4608, "rd_total_time_ns": 10, "wr_operations": 8, "wr_bytes": 8_388_608,
                  "wr_total_time_ns": 20, "flush_operations": 1, "flush_total_time_ns": 30, "wr_highest_offset": 8_388_608],
        "parent": ["node-name": "proto0", "stats": ["wr_highest_offset": 8_716_288]],
    ]
    let nodes: JSONValue = [
        ["node-name": "fmt0", "file": "/d/disk.qcow2", "write_threshold": 0, "image": ["virtual-size": 268_435_456, "actual-size": 1000]],
        ["node-name": "proto0", "file": "/d/disk.qcow2", "write_threshold": 9_000_000, "image": ["virtual-size": 8_716_288]],
    ]

    @Test func blockUsesTheProtocolNodeForAllocationAndPhysical() throws {
        let drives = try BlockGroup.drives(blockstats: [goodStats], nodes: nodes)
        #expect(drives.count == 1)
        let d = try #require(drives.first)
        #expect(d.name == "drive0")
        #expect(d.allocation == 8_716_288)
        #expect(d.capacity == 268_435_456)
        #expect(d.physical == 8_716_288)
        #expect(d.threshold == 9_000_000)
        let params = BlockGroup.params(drives)
        #expect(params.first == StatsParam("block.count", .uint(1)))
        #expect(params.contains(StatsParam("block.0.wr.bytes", .uint(8_388_608))))
        #expect(params.contains(StatsParam("block.0.threshold", .uint(9_000_000))))
    }

    @Test func blockdevDrivesAreNamedByTheirDevice() throws {
        var entry = goodStats.objectValue ?? [:]
        entry["device"] = ""
        let d = try BlockGroup.drives(blockstats: [.object(entry)], nodes: nodes)
        #expect(d.first?.name == "disk0")
    }

    @Test func aDriveWithoutMediumIsLeftOut() throws {
        let empty: JSONValue = ["device": "cd0", "stats": [:]]
        #expect(try BlockGroup.drives(blockstats: [empty, goodStats], nodes: nodes).map(\.name) == ["drive0"])
    }

    @Test func aMissingCounterNamesItsPath() {
        var stats = goodStats["stats"]?.objectValue ?? [:]
        stats["rd_bytes"] = "many"
        var entry = goodStats.objectValue ?? [:]
        entry["stats"] = .object(stats)
        #expect(throws: QMPError.unexpectedReply(command: "query-blockstats", detail: "return[0].stats.rd_bytes: expected a non-negative integer, got a string")) {
            try BlockGroup.drives(blockstats: [.object(entry)], nodes: nodes)
        }
        #expect(throws: QMPError.self) { try BlockGroup.drives(blockstats: ["not": "an array"], nodes: nodes) }
        #expect(throws: QMPError.self) { try BlockGroup.drives(blockstats: [goodStats], nodes: [["no-name": 1]]) }
    }

    @Test func tapNamesComeFromInfoNetworkAndAreValidated() throws {
        let text = "nic0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:56\r\n \\ net0: index=0,type=tap,ifname=vmptap0,script=no,downscript=no\r\nnet1: index=0,type=tap,ifname=../../etc,script=no\r\nnet2: index=0,type=user,net=10.0.2.0\r\n"
        #expect(try InterfaceGroup.tapNames(.string(text)) == ["vmptap0"])
        #expect(throws: QMPError.self) { try InterfaceGroup.tapNames(["not": "text"]) }
        #expect(!InterfaceGroup.isInterfaceName("a-very-long-interface-name"))
        #expect(!InterfaceGroup.isInterfaceName(".."))
    }

    @Test func interfaceCountersAreReadFromTheHost() {
        // The loopback device exists on every Linux host.
        let params = InterfaceGroup.params(taps: ["lo"])
        #expect(params.contains(StatsParam("net.count", .uint(1))))
        #expect(params.contains { $0.key == "net.0.rx.bytes" })
        #expect(params.contains { $0.key == "net.0.tx.drop" })
    }

    @Test func balloonLeavesOutFiguresTheGuestDidNotSend() throws {
        let memory: JSONValue = ["base-memory": 134_217_728, "plugged-memory": 0]
        let guest: JSONValue = ["stats": ["stat-free-memory": 69_439_488, "stat-swap-in": -1, "stat-minor-faults": 1359], "last-update": 1_795_332_103]
        let params = try BalloonGroup.params(balloonActual: 67_108_864, maximumBytes: BalloonGroup.maximum(memory), guestStats: guest, rssBytes: 10_240)
        #expect(params.contains(StatsParam("balloon.current", .uint(65_536))))
        #expect(params.contains(StatsParam("balloon.maximum", .uint(131_072))))
        #expect(params.contains(StatsParam("balloon.unused", .uint(67_812))))
        #expect(params.contains(StatsParam("balloon.minor_fault", .uint(1359))))
        #expect(!params.contains { $0.key == "balloon.swap_in" })
        #expect(params.contains(StatsParam("balloon.rss", .uint(10))))

        let never: JSONValue = ["stats": ["stat-free-memory": -1], "last-update": 0]
        let none = try BalloonGroup.params(balloonActual: nil, maximumBytes: 128 << 20, guestStats: never, rssBytes: nil)
        #expect(none == [StatsParam("balloon.current", .uint(131_072)), StatsParam("balloon.maximum", .uint(131_072))])
        #expect(throws: QMPError.self) { try BalloonGroup.maximum(["base-memory": "x"]) }
        #expect(try BalloonGroup.maximum(["base-memory": 1024, "plugged-memory": 1024]) == 2048)
    }

    @Test func balloonPathIsFoundByType() throws {
        let list: JSONValue = [["name": "type", "type": "string"], ["name": "bal", "type": "child<virtio-balloon-pci>"]]
        #expect(try BalloonGroup.balloonPath(lists: [(base: "/machine/peripheral", reply: list)]) == "/machine/peripheral/bal")
        #expect(try BalloonGroup.balloonPath(lists: [(base: "/machine/peripheral", reply: [])]) == nil)
    }

    @Test func vcpuThreadsAndMaximum() throws {
        let cpus: JSONValue = [["cpu-index": 0, "thread-id": 1], ["cpu-index": 1, "thread-id": 2]]
        #expect(try VCPUGroup.vcpus(cpus) == [.init(index: 0, threadID: 1), .init(index: 1, threadID: 2)])
        #expect(try VCPUGroup.maximum([["vcpus-count": 1], ["vcpus-count": 1], ["vcpus-count": 2]]) == 4)
        #expect(throws: QMPError.self) { try VCPUGroup.vcpus([["cpu-index": 0]]) }
    }

    @Test func stateKeysFollowLibvirt() throws {
        let params = try StateGroup.params(status: ["status": "io-error", "running": false])
        #expect(params == [
            StatsParam("state.state", .int(3)), StatsParam("state.reason", .int(5)),
            StatsParam("state.status", .string("io-error")), StatsParam("state.monitor-response", .int(0)),
        ])
        #expect(throws: QMPError.self) { try StateGroup.params(status: ["running": true]) }
    }
}

@Suite struct ProcessInstanceTests {
    @Test func aProcessStartTimeIsInUnixSeconds() throws {
        // This test process started moments ago: its start is within a day of now, not near 1970.
        let me = try #require(ProcFS.instance(pid: getpid()))
        let now = MonotonicTime.wallNow()
        #expect(me.startedAt <= now + 1)
        #expect(me.startedAt > now - 86_400)
        #expect(me.id.hasPrefix("\(getpid())@"))
    }
}

@Suite struct IOGroupParsingTests {
    func stats(_ histogram: JSONValue) -> ReplyReader {
        ReplyReader(command: "query-blockstats", value: ["wr_latency_histogram": histogram], path: "return[0].stats")
    }

    @Test func readsHistograms() throws {
        let h = try IOGroup.histograms(stats(["boundaries": [10, 20], "bins": [1, 2, 3]]))
        #expect(h[.write] == LatencyHistogram(boundaries: [10, 20], bins: [1, 2, 3]))
        #expect(h[.read] == nil)
    }

    @Test func refusesMalformedHistograms() {
        #expect(throws: QMPError.self) { try IOGroup.histograms(stats(["boundaries": [10], "bins": [1, 2, 3]])) }
        #expect(throws: QMPError.unexpectedReply(command: "query-blockstats", detail: "return[0].stats.wr_latency_histogram.bins[1]: expected a non-negative integer, got a string")) {
            try IOGroup.histograms(stats(["boundaries": [10], "bins": [1, "x"]]))
        }
        #expect(throws: QMPError.self) { try IOGroup.histograms(stats(["bins": [1]])) }
    }

    @Test func missingRequiredCountersAreErrorsAndOptionalOnesZero() throws {
        var members: [String: JSONValue] = [:]
        for c in IOCounter.allCases { members[c.qemuName] = 5 }
        members["invalid_wr_operations"] = nil
        let c = try IOGroup.counters(ReplyReader(command: "query-blockstats", value: .object(members)))
        #expect(c[.invalidWriteIOs] == 0 && c[.writeBytes] == 5)
        members["wr_bytes"] = nil
        #expect(throws: QMPError.self) { try IOGroup.counters(ReplyReader(command: "query-blockstats", value: .object(members))) }
    }
}
