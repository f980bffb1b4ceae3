import Glibc
@testable import Hypervisor
import QMP
import Testing
import VMPulseCore

/// The reply readers on real QEMU 7.2 replies (the fuzz seed corpus, captured from a
/// QEMU with a `-drive` disk, a `-blockdev` disk with a write threshold, an empty CD-ROM,
/// a balloon and an I/O thread) and on hostile ones the fuzzer runs them on.
@Suite struct ReplyParsersTests {
    /// A reply from Fuzz/corpus/json, as the monitor sent it; its `return` member.
    static func reply(_ name: String) throws -> JSONValue {
        let root = URLPath.repository + "/Fuzz/corpus/json/" + name + ".json"
        guard let file = fopen(root, "rb") else { throw ReadError(path: root) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while case let n = fread(&chunk, 1, chunk.count, file), n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
        let value = try JSONParser.parse(bytes)
        guard let result = value["return"] else { throw ReadError(path: root) }
        return result
    }

    struct ReadError: Error { var path: String }

    @Test func realBlockRepliesGiveEveryDriveWithAMedium() throws {
        let drives = try BlockGroup.drives(blockstats: Self.reply("query-blockstats"), nodes: Self.reply("query-named-block-nodes"))
        #expect(drives.map(\.name) == ["drive0", "disk1"])  // the empty CD-ROM has no node: left out
        #expect(drives.first?.capacity == 67_108_864)
        #expect(drives.first?.path == "/tmp/qmpcap/d0.qcow2")
        #expect(drives.last?.protocolNode == "proto1")
        #expect(drives.last?.threshold == 4_194_304)
        #expect(drives.last?.deviceID == "/machine/peripheral/disk1/virtio-backend")
        #expect(drives.first?.histograms[.read]?.boundaries == [10_000, 100_000, 1_000_000])
    }

    @Test func realRepliesAreReadByTheirReaders() throws {
        #expect(try StateGroup.params(status: Self.reply("query-status")).contains(StatsParam("state.status", .string("prelaunch"))))
        #expect(try VCPUGroup.vcpus(Self.reply("query-cpus-fast")).map(\.index) == [0, 1])
        #expect(try VCPUGroup.maximum(Self.reply("query-hotpluggable-cpus")) == 4)
        #expect(try BalloonGroup.maximum(Self.reply("query-memory-size-summary")) == 134_217_728)
        #expect(try BalloonGroup.balloonPath(lists: [("/machine/peripheral", Self.reply("qom-list-peripheral"))]) == "/machine/peripheral/balloon0")
        #expect(try IOThreadGroup.params(Self.reply("query-iothreads")).contains(StatsParam("iothread.0.name", .string("io0"))))
        #expect(try InterfaceGroup.tapNames(Self.reply("info-network")) == [])  // a user-mode netdev, no tap
        // Before the guest's first report QEMU sends -1 for every figure and no last-update: none is shown.
        let params = try BalloonGroup.params(balloonActual: nil, maximumBytes: 1 << 27, guestStats: Self.reply("guest-stats"), rssBytes: nil)
        #expect(params.map(\.key) == ["balloon.current", "balloon.maximum"])
    }

    /// A figure the guest did not send is 2^64 - 1 in QEMU 7.2's JSON (its -1 written unsigned):
    /// left out, not an error that hides the whole balloon group.
    @Test func aGuestFigureNeverSentIsLeftOut() throws {
        let stats: JSONValue = ["stats": ["stat-free-memory": 69_439_488, "stat-htlb-pgalloc": .uint(UInt64.max), "stat-swap-in": -1],
                                "last-update": 1_795_332_103]
        let params = try BalloonGroup.params(balloonActual: nil, maximumBytes: 1 << 27, guestStats: stats, rssBytes: nil)
        #expect(params.contains(StatsParam("balloon.unused", .uint(67_812))))
        #expect(!params.contains { $0.key == "balloon.hugetlb_pgalloc" || $0.key == "balloon.swap_in" })
        #expect(throws: QMPError.self) {
            try BalloonGroup.params(balloonActual: nil, maximumBytes: 1, guestStats: ["stats": ["stat-swap-in": -5], "last-update": 1], rssBytes: nil)
        }
    }

    /// The fuzz target's entry point reads real replies (so the fuzzer starts from deep in the readers).
    @Test func everyReaderRunsOnOneReply() throws {
        let pair = JSONValue.array([try Self.reply("query-blockstats"), try Self.reply("query-named-block-nodes")])
        #expect(ReplyParsers.readAll(pair) >= 2)  // both block passes
        #expect(ReplyParsers.readAll(try Self.reply("query-status")) >= 1)
    }

    @Test func hostileRepliesAreErrorsNotTraps() {
        let max = JSONValue.uint(UInt64.max)
        let hostile: [JSONValue] = [
            .null, .array([]), .object([:]), .string("\u{0}"), .array([.array([]), .null]),
            ["base-memory": max, "plugged-memory": max, "actual": max, "status": "io-error"],
            .array([["vcpus-count": max], ["vcpus-count": max]]),
            .array([["device": "d", "node-name": "f", "stats": ["rd_latency_histogram": ["boundaries": [max, 5, 1], "bins": [1, 2, 3, max]]]]]),
            ["stats": ["stat-swap-in": .int(Int64.min)], "last-update": .int(Int64.max)],
        ]
        for reply in hostile { ReplyParsers.readAll(reply) }
    }

    @Test func sumsPast2To64AreRefusedNotWrapped() {
        let max = JSONValue.uint(UInt64.max)
        #expect(throws: QMPError.unexpectedReply(command: "query-memory-size-summary",
                                                 detail: "return: base-memory 18446744073709551615 + plugged-memory 1 passes 2^64 - 1")) {
            try BalloonGroup.maximum(["base-memory": max, "plugged-memory": 1])
        }
        #expect(throws: QMPError.unexpectedReply(command: "query-hotpluggable-cpus", detail: "return[1].vcpus-count: the sum passes 2^64 - 1")) {
            try VCPUGroup.maximum([["vcpus-count": max], ["vcpus-count": 1]])
        }
    }
}

/// The repository's root, from this file's path (Tests/HypervisorTests/...).
enum URLPath {
    static let repository: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()
}
