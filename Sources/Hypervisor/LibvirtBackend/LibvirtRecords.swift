import Libvirt
import VMPulseCore

/// libvirt's typed parameters as vmpulse's records and readings.
///
/// libvirt names the keys (`virsh domstats` prints the same); where the QMP backend names
/// one differently, libvirt's name wins on this backend. The `io` group is built from
/// libvirt's `block.N.*` counters: libvirt has no unmap, invalid or failed operations,
/// no idle time and no latency histograms, so those `io` keys are absent here.
enum LibvirtRecords {
    /// vmpulse's groups as libvirt's stats flags (`thin` is the agent's own; `io` needs `block`).
    static func flags(for groups: [StatsGroup]) -> LibvirtStatsGroups {
        var flags: LibvirtStatsGroups = []
        for group in groups {
            switch group {
            case .state: flags.insert(.state)
            case .cpuTotal: flags.insert(.cpuTotal)
            case .balloon: flags.insert(.balloon)
            case .vcpu: flags.insert(.vcpu)
            case .interface: flags.insert(.interface)
            case .block, .io: flags.insert(.block)
            case .iothread: flags.insert(.iothread)
            case .perf: flags.insert(.perf)
            case .memory: flags.insert(.memory)
            case .dirtyrate: flags.insert(.dirtyrate)
            case .vm: flags.insert(.vm)
            case .thin, .heartbeat: break
            }
        }
        // The state tells a stopped domain from a busy one.
        flags.insert(.state)
        return flags
    }

    static func value(_ v: LibvirtValue) -> TypedValue {
        switch v {
        case .int(let x): .int(x)
        case .uint(let x): .uint(x)
        case .double(let x): .double(x)
        case .bool(let x): .bool(x)
        case .string(let x): .string(x)
        }
    }

    /// Whether libvirt skipped the monitor for this domain (with NOWAIT, a domain whose job
    /// lock is held comes back without its block counters): a disk with a path but no
    /// `rd.reqs`. Only telling when the block group was asked.
    static func isBusy(_ stats: LibvirtDomainStats) -> Bool {
        let disks = disks(stats)
        return disks.contains { $0.path != nil && !$0.hasCounters }
    }

    struct Disk {
        var index: Int
        var name: String
        var path: String?
        var hasCounters: Bool
        var counters: BlockCounters
        var allocation: UInt64
        var capacity: UInt64?
        var backingIndex: UInt64?
    }

    /// The disks of the `block` group (`block.count` entries, top images only).
    static func disks(_ stats: LibvirtDomainStats) -> [Disk] {
        var byIndex: [Int: [String: LibvirtValue]] = [:]
        for p in stats.params where p.name.hasPrefix("block.") {
            let rest = p.name.dropFirst("block.".count)
            guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]), i >= 0, i < 4096 else { continue }
            byIndex[i, default: [:]][String(rest[rest.index(after: dot)...])] = p.value
        }
        return byIndex.keys.sorted().compactMap { i in
            let m = byIndex[i] ?? [:]
            guard case .string(let name)? = m["name"] else { return nil }
            var c = BlockCounters()
            let pairs: [(IOCounter, String)] = [
                (.readBytes, "rd.bytes"), (.writeBytes, "wr.bytes"), (.readIOs, "rd.reqs"), (.writeIOs, "wr.reqs"),
                (.flushIOs, "fl.reqs"), (.totalReadTimeNs, "rd.times"), (.totalWriteTimeNs, "wr.times"), (.totalFlushTimeNs, "fl.times"),
            ]
            for (counter, key) in pairs { c[counter] = uint(m[key]) ?? 0 }
            var path: String?
            if case .string(let p)? = m["path"] { path = p }
            return Disk(index: i, name: name, path: path, hasCounters: m["rd.reqs"] != nil, counters: c,
                        allocation: uint(m["allocation"]) ?? 0, capacity: uint(m["capacity"]), backingIndex: uint(m["backingIndex"]))
        }
    }

    /// The counters libvirt does not report.
    static let unreported: Set<IOCounter> = [
        .unmapBytes, .unmapIOs, .invalidReadIOs, .invalidWriteIOs, .invalidFlushIOs, .invalidUnmapIOs,
        .readIOsError, .writeIOsError, .flushIOsError, .unmapIOsError, .totalUnmapTimeNs,
    ]

    /// An unsigned figure; a negative signed one is not a counter and reads as absent.
    static func uint(_ v: LibvirtValue?) -> UInt64? {
        switch v {
        case .uint(let x)?: x
        case .int(let x)? where x >= 0: UInt64(x)
        default: nil
        }
    }

    /// The record for `groups`: libvirt's keys of those groups, `state.monitor-response`,
    /// and `io` built from `block` when asked.
    static func record(_ stats: LibvirtDomainStats, groups: [StatsGroup], busy: Bool) -> StatsRecord {
        let prefixes = Set(groups.filter { $0 != .io && $0 != .thin && $0 != .heartbeat }.map { $0.keyPrefix + "." })
        var record = StatsRecord(name: stats.name, uuid: stats.uuid)
        for p in stats.params {
            let group = p.name.firstIndex(of: ".").map { String(p.name[...$0]) } ?? p.name
            if prefixes.contains(group) { record.params.append(StatsParam(p.name, value(p.value))) }
        }
        // As on the QMP backend: with the state group, or whenever the domain did not answer.
        if groups.contains(.state) || busy {
            let afterState = record.params.firstIndex { !$0.key.hasPrefix("state.") } ?? record.params.endIndex
            record.params.insert(monitorResponse(busy: busy), at: afterState)
        }
        if groups.contains(.io) && !busy {
            let disks = disks(stats)
            var w = ParamWriter()
            w.uint("io.count", UInt64(disks.count))
            for (i, d) in disks.enumerated() {
                w.append(contentsOf: IOGroup.counterParams(index: i, name: d.name, counters: d.counters, idleTimeNs: nil, unreported: unreported))
            }
            record.params += w.params
        }
        if busy { record.errors.append("libvirt skipped the domain's monitor: a job holds it (busy or stuck); its counters are left out") }
        return record
    }

    static func monitorResponse(busy: Bool) -> StatsParam {
        StatsParam(MonitorResponse.key, .int(busy ? MonitorResponse.unresponsive : MonitorResponse.responsive))
    }
}
