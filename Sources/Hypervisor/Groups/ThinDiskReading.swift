import QMP
import VMPulseCore

/// What the thin-disk monitor needs from QEMU about one disk.
public struct ThinDiskReading: Sendable, Equatable {
    /// The node the write threshold is set on: the protocol node under the format layer
    /// (the block device holding the qcow2 image). Its highest written offset is how far
    /// into the device the image reaches, which is what the device's size must stay ahead of;
    /// the format node's would count guest offsets, which say nothing about the device.
    public var node: String
    /// The format node (qcow2) above it, which QEMU names in BLOCK_IO_ERROR.
    public var formatNode: String
    /// The drive's id (or device id), which QEMU names in BLOCK_IO_ERROR's `device`.
    public var drive: String
    /// Highest offset written in that node (bytes).
    public var allocation: UInt64
    /// The disk's size as the guest sees it (format node's virtual size), when known.
    public var capacity: UInt64?
    /// The threshold QEMU has on that node now (0: none).
    public var threshold: UInt64
}

extension ThinDiskReading {
    /// Finds the disk named `drive` (drive id or device id, as `block.N.name`) or the node
    /// `node`, in `query-blockstats` and `query-named-block-nodes`.
    static func find(drive: String?, node: String?, blockstats: JSONValue, nodes: JSONValue) throws(QMPError) -> ThinDiskReading? {
        var nodeByName: [String: ReplyReader] = [:]
        for n in try ReplyReader(command: "query-named-block-nodes", value: nodes).array() {
            nodeByName[try n.string("node-name")] = n
        }
        for entry in try ReplyReader(command: "query-blockstats", value: blockstats).array() {
            guard let formatNode = try entry.optionalString("node-name") else { continue }
            let parent = entry.optionalMember("parent")
            let protocolNode = try parent?.optionalString("node-name")
            let name = try BlockGroup.driveName(entry)
            let matches = (drive != nil && drive == name) || (node != nil && (node == formatNode || node == protocolNode))
            guard matches else { continue }
            let target = node ?? protocolNode ?? formatNode
            var stats = try entry.member("stats").object()
            if target != formatNode, let parent { stats = try parent.member("stats").object() }
            let capacity = try nodeByName[formatNode]?.optionalMember("image")?.optionalUInt("virtual-size")
            let threshold = try nodeByName[target]?.optionalUInt("write_threshold") ?? 0
            return ThinDiskReading(node: target, formatNode: formatNode, drive: name, allocation: try stats.uint("wr_highest_offset"), capacity: capacity, threshold: threshold)
        }
        return nil
    }
}

extension QMPBackend {
    /// Reads a thin disk of a VM; nil when the VM has no such drive or node.
    public func readThinDisk(socketPath: String, drive: String?, node: String?) async throws(QMPError) -> ThinDiskReading? {
        let stats = try await execute(socketPath: socketPath, "query-blockstats")
        let nodes = try await execute(socketPath: socketPath, "query-named-block-nodes", arguments: ["flat": true])
        return try ThinDiskReading.find(drive: drive, node: node, blockstats: stats, nodes: nodes)
    }
}
