import QMP
import VMPulseCore

/// What the thin-disk monitor needs from QEMU about one disk.
public struct ThinDiskReading: Sendable, Equatable {
    /// The node the write threshold goes on: the protocol node under the format layer (the
    /// block device holding the qcow2 image), or the drive's only node for a raw disk.
    ///
    /// Why that node: its highest written offset is how far into the device the image
    /// reaches, which is what the device's size must stay ahead of. qcow2 allocates
    /// clusters at the end of its file, wherever the guest writes, so the format node's
    /// offsets (the guest's) say nothing about how full the device is: a guest rewriting
    /// its first megabyte never grows the image, one writing 1 MiB at 900 GiB grows it by
    /// a cluster, not to 900 GiB. libvirt's `vda[1]` threshold and oVirt do the same.
    public var node: String
    /// The format node (qcow2) above it, which QEMU names in BLOCK_IO_ERROR.
    public var formatNode: String
    /// The drive's name (as `block.N.name`).
    public var drive: String
    /// Highest offset written in `node` (bytes).
    public var allocation: UInt64
    /// The disk's size as the guest sees it (format node's virtual size), when known.
    public var capacity: UInt64?
    /// The guest is paused on an I/O error (`io-error`) and QEMU's `io-status` for this
    /// drive is `nospace`: it hit the end of the device (`werror=enospc`), whether or not
    /// anyone saw the BLOCK_IO_ERROR event. Both are needed: QEMU 7.2's `cont` resets the
    /// io-status of named drives only, so on a `-blockdev` drive (libvirt's way) `nospace`
    /// stays after the guest runs again.
    public var noSpace: Bool = false
}

extension ThinDiskReading {
    static let block = QMPQuery("query-block")

    /// The disk named `drive` (as `block.N.name`) or having a node named `node` (format or
    /// protocol: the mark goes on the protocol node either way).
    static func find(drive: String?, node: String?, in drives: [BlockGroup.Drive]) -> ThinDiskReading? {
        let found = drives.first { d in
            if let drive { return d.name == drive }
            return node != nil && (d.formatNode == node || d.protocolNode == node)
        }
        guard let d = found else { return nil }
        return ThinDiskReading(node: d.protocolNode ?? d.formatNode, formatNode: d.formatNode, drive: d.name,
                               allocation: d.allocation, capacity: d.capacity)
    }

    /// Whether the guest is paused out of space on the drive whose root node is `formatNode`.
    /// Not when any drive reports a failure (`failed`): the pause may be that drive's, and
    /// resuming the guest onto a failing disk is not the agent's call.
    static func noSpace(formatNode: String, block: JSONValue, status: JSONValue) throws(QMPError) -> Bool {
        guard try ReplyReader(command: "query-status", value: status).object().string("status") == "io-error" else { return false }
        var mine = false
        for entry in try ReplyReader(command: "query-block", value: block).array() {
            let ioStatus = try entry.optionalString("io-status")
            if ioStatus == "failed" { return false }
            if try entry.optionalMember("inserted")?.optionalString("node-name") == formatNode { mine = ioStatus == "nospace" }
        }
        return mine
    }
}

extension QMPBackend {
    /// Reads a thin disk of a VM (four queries in one write); nil when the VM has no such
    /// drive or node.
    public func readThinDisk(machine: String, drive: String?, node: String?) async throws(MachineError) -> ThinDiskReading? {
        do throws(QMPError) {
            return try await readThinDisk(socketPath: machine, drive: drive, node: node)
        } catch { throw MachineError(error) }
    }

    private func readThinDisk(socketPath: String, drive: String?, node: String?) async throws(QMPError) -> ThinDiskReading? {
        let queries = [BlockGroup.stats, BlockGroup.nodes, ThinDiskReading.block, StateGroup.queries[0]]
        let replies = try await run(socketPath: socketPath, queries)
        let drives = try BlockGroup.drives(blockstats: replies.reply(BlockGroup.stats), nodes: replies.reply(BlockGroup.nodes))
        guard var reading = ThinDiskReading.find(drive: drive, node: node, in: drives) else { return nil }
        reading.noSpace = try ThinDiskReading.noSpace(formatNode: reading.formatNode, block: replies.reply(ThinDiskReading.block),
                                                      status: replies.reply(StateGroup.queries[0]))
        return reading
    }
}
