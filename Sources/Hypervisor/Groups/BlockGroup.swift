import QMP
import VMPulseCore

/// `block`: per drive, libvirt's keys from `query-blockstats` (the device's
/// counters) and `query-named-block-nodes` (sizes, threshold).
///
/// - `allocation` is the highest offset written in the *protocol* node (the
///   file or block device under the qcow2 layer): for a thin disk that is how
///   much of the container is in use, which is what libvirt reports and what
///   a write threshold is compared with.
/// - `capacity` is the format node's virtual size (what the guest sees).
/// - `physical` is the protocol node's size (the file's length or the block
///   device's size): the container that holds the image.
/// - `threshold` is the write threshold set on either node; absent when none is set.
enum BlockGroup {
    static let stats = QMPQuery("query-blockstats")
    static let nodes = QMPQuery("query-named-block-nodes", ["flat": true])
    static let queries = [stats, nodes]

    /// One drive, as the `io` and thin-disk features will also need it.
    struct Drive: Equatable, Sendable {
        var name: String
        var path: String
        var formatNode: String
        var protocolNode: String?
        var rdReqs, rdBytes, rdTimes: UInt64
        var wrReqs, wrBytes, wrTimes: UInt64
        var flReqs, flTimes: UInt64
        var allocation: UInt64
        var capacity: UInt64?
        var physical: UInt64?
        var threshold: UInt64
        /// Every counter of the `io` group.
        var counters: BlockCounters
        var histograms: [IOOperation: LatencyHistogram]
        var idleTimeNs: UInt64?
        /// The id `block-latency-histogram-set` takes: the device's QOM path (or the drive id without one).
        var deviceID: String
    }

    static func drives(blockstats: JSONValue, nodes: JSONValue) throws(QMPError) -> [Drive] {
        var nodeByName: [String: ReplyReader] = [:]
        for node in try ReplyReader(command: "query-named-block-nodes", value: nodes).array() {
            nodeByName[try node.string("node-name")] = node
        }
        var drives: [Drive] = []
        for entry in try ReplyReader(command: "query-blockstats", value: blockstats).array() {
            // A drive without a medium (an empty CD-ROM) has no node; libvirt leaves it out too.
            guard let formatNode = try entry.optionalString("node-name") else { continue }
            let s = try entry.member("stats").object()
            let parent = entry.optionalMember("parent")
            let parentStats = try parent?.member("stats").object()
            let protocolNode = try parent?.optionalString("node-name")
            let format = nodeByName[formatNode]
            let proto = protocolNode.flatMap { nodeByName[$0] }
            let formatImage = try format?.member("image").object()
            let protoImage = try proto?.member("image").object()
            var physical = try protoImage?.uint("virtual-size")
            if physical == nil { physical = try formatImage?.optionalUInt("actual-size") }
            let formatThreshold = try format?.optionalUInt("write_threshold") ?? 0
            let protoThreshold = try proto?.optionalUInt("write_threshold") ?? 0
            let path = try format?.optionalString("file")

            drives.append(Drive(
                name: try driveName(entry),
                path: path ?? "",
                formatNode: formatNode,
                protocolNode: protocolNode,
                rdReqs: try s.uint("rd_operations"), rdBytes: try s.uint("rd_bytes"), rdTimes: try s.uint("rd_total_time_ns"),
                wrReqs: try s.uint("wr_operations"), wrBytes: try s.uint("wr_bytes"), wrTimes: try s.uint("wr_total_time_ns"),
                flReqs: try s.uint("flush_operations"), flTimes: try s.uint("flush_total_time_ns"),
                allocation: try (parentStats ?? s).uint("wr_highest_offset"),
                capacity: try formatImage?.uint("virtual-size"),
                physical: physical,
                threshold: max(formatThreshold, protoThreshold),
                counters: try IOGroup.counters(s),
                histograms: try IOGroup.histograms(s),
                idleTimeNs: try s.optionalUInt("idle_time_ns"),
                deviceID: try Self.deviceID(entry)
            ))
        }
        return drives
    }

    /// The drive's name: its `-drive` id, or for `-blockdev` drives (libvirt's way) the device's id.
    static func driveName(_ entry: ReplyReader) throws(QMPError) -> String {
        if let device = try entry.optionalString("device"), !device.isEmpty { return device }
        guard let qdev = try entry.optionalString("qdev") else { return "" }
        let prefix = "/machine/peripheral/"
        if qdev.hasPrefix(prefix) {
            return String(qdev.dropFirst(prefix.count).split(separator: "/").first ?? "")
        }
        return qdev
    }

    /// `block-latency-histogram-set` names the guest device (its QOM path), not the drive.
    static func deviceID(_ entry: ReplyReader) throws(QMPError) -> String {
        if let qdev = try entry.optionalString("qdev"), !qdev.isEmpty { return qdev }
        return try entry.optionalString("device") ?? ""
    }

    static func params(_ drives: [Drive]) -> [StatsParam] {
        var w = ParamWriter()
        w.uint("block.count", UInt64(drives.count))
        for (i, d) in drives.enumerated() {
            let p = "block.\(i)"
            w.string("\(p).name", d.name)
            if !d.path.isEmpty { w.string("\(p).path", d.path) }
            w.uint("\(p).rd.reqs", d.rdReqs)
            w.uint("\(p).rd.bytes", d.rdBytes)
            w.uint("\(p).rd.times", d.rdTimes)
            w.uint("\(p).wr.reqs", d.wrReqs)
            w.uint("\(p).wr.bytes", d.wrBytes)
            w.uint("\(p).wr.times", d.wrTimes)
            w.uint("\(p).fl.reqs", d.flReqs)
            w.uint("\(p).fl.times", d.flTimes)
            w.uint("\(p).allocation", d.allocation)
            w.uint("\(p).capacity", ifPresent: d.capacity)
            w.uint("\(p).physical", ifPresent: d.physical)
            if d.threshold > 0 { w.uint("\(p).threshold", d.threshold) }
        }
        return w.params
    }
}
