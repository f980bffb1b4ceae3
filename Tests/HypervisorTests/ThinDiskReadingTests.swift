@testable import Hypervisor
import QMP
import Testing
import VMPulseCore

/// Finding a thin disk in QEMU's replies: the mark goes on the protocol node, however the
/// disk is named; a pause counts only while QEMU is paused on an I/O error.
@Suite struct ThinDiskReadingTests {
    static let stats: JSONValue = [[
        "device": "", "node-name": "fmt0", "qdev": "/machine/peripheral/disk0/virtio-backend",
        "stats": ["rd_operations": 0, "rd_bytes": 0, "rd_total_time_ns": 0, "wr_operations": 9, "wr_bytes": 9_437_184,
                  "wr_total_time_ns": 20, "flush_operations": 0, "flush_total_time_ns": 0, "wr_highest_offset": 900_000_000],
        "parent": ["node-name": "proto0", "stats": ["wr_highest_offset": 10_158_080]],
    ], [
        "device": "scratch", "node-name": "raw0", "qdev": "/machine/peripheral/disk1/virtio-backend",
        "stats": ["rd_operations": 0, "rd_bytes": 0, "rd_total_time_ns": 0, "wr_operations": 1, "wr_bytes": 512,
                  "wr_total_time_ns": 1, "flush_operations": 0, "flush_total_time_ns": 0, "wr_highest_offset": 4096],
    ]]
    static let nodes: JSONValue = [
        ["node-name": "fmt0", "file": "/dev/loop3", "write_threshold": 0, "image": ["virtual-size": 1_073_741_824]],
        ["node-name": "proto0", "file": "/dev/loop3", "write_threshold": 13_421_773, "image": ["virtual-size": 67_108_864]],
        ["node-name": "raw0", "file": "/dev/loop4", "write_threshold": 0, "image": ["virtual-size": 8_388_608]],
    ]

    func drives() throws -> [BlockGroup.Drive] { try BlockGroup.drives(blockstats: Self.stats, nodes: Self.nodes) }

    @Test func theMarkGoesOnTheProtocolNodeWhicheverNameIsGiven() throws {
        for (drive, node) in [("disk0", nil), (nil, "fmt0"), (nil, "proto0")] as [(String?, String?)] {
            let r = try #require(ThinDiskReading.find(drive: drive, node: node, in: drives()))
            #expect(r.node == "proto0" && r.formatNode == "fmt0" && r.drive == "disk0")
            // The protocol node's highest offset (how far the image reaches into the
            // device), not the guest's offset 900 MB into its disk.
            #expect(r.allocation == 10_158_080)
            #expect(r.capacity == 1_073_741_824)
        }
    }

    @Test func aRawDiskUsesItsOnlyNode() throws {
        let r = try #require(ThinDiskReading.find(drive: "scratch", node: nil, in: drives()))
        #expect(r.node == "raw0" && r.formatNode == "raw0" && r.allocation == 4096)
    }

    @Test func anUnknownDriveOrNodeIsNotFound() throws {
        #expect(ThinDiskReading.find(drive: "disk9", node: nil, in: try drives()) == nil)
        #expect(ThinDiskReading.find(drive: nil, node: "nosuchnode", in: try drives()) == nil)
    }

    static func block(_ ioStatus: String?) -> JSONValue {
        var entry: [String: JSONValue] = ["device": "", "qdev": "/machine/peripheral/disk0/virtio-backend", "inserted": ["node-name": "fmt0"]]
        if let ioStatus { entry["io-status"] = .string(ioStatus) }
        return [.object(entry)]
    }

    @Test func outOfSpaceOnlyWhilePausedOnAnIOError() throws {
        let paused: JSONValue = ["status": "io-error", "running": false, "singlestep": false]
        let running: JSONValue = ["status": "running", "running": true, "singlestep": false]
        #expect(try ThinDiskReading.noSpace(formatNode: "fmt0", block: Self.block("nospace"), status: paused))
        // QEMU 7.2 leaves io-status at nospace on -blockdev drives after cont.
        #expect(try !ThinDiskReading.noSpace(formatNode: "fmt0", block: Self.block("nospace"), status: running))
        #expect(try !ThinDiskReading.noSpace(formatNode: "fmt0", block: Self.block("failed"), status: paused))
        #expect(try !ThinDiskReading.noSpace(formatNode: "fmt0", block: Self.block(nil), status: paused))
        #expect(try !ThinDiskReading.noSpace(formatNode: "other", block: Self.block("nospace"), status: paused))
        // Another drive failed: the pause may be its own; the guest is not the agent's to resume.
        let failing: JSONValue = .array((Self.block("nospace").arrayValue ?? []) + [["device": "data", "io-status": "failed", "inserted": ["node-name": "fmt1"]]])
        #expect(try !ThinDiskReading.noSpace(formatNode: "fmt0", block: failing, status: paused))
    }

    @Test func repliesOffTheSchemaAreErrorsNamingTheCommand() {
        #expect {
            try ThinDiskReading.noSpace(formatNode: "fmt0", block: Self.block("nospace"), status: ["status": 3])
        } throws: { error in
            guard case QMPError.unexpectedReply(let command, let detail) = error else { return false }
            return command == "query-status" && detail.contains("status")
        }
        #expect {
            try ThinDiskReading.noSpace(formatNode: "fmt0", block: ["not": "a list"], status: ["status": "io-error"])
        } throws: { error in
            guard case QMPError.unexpectedReply(let command, _) = error else { return false }
            return command == "query-block"
        }
    }
}
