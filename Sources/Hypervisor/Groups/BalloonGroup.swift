import QMP
import VMPulseCore

/// `balloon`: memory as libvirt reports it, in KiB. `current` is the balloon's
/// size (or the VM's memory when it has no balloon); the guest's own figures
/// come from the balloon driver's `guest-stats`, which QEMU refreshes only
/// after `guest-stats-polling-interval` is set (vmpulse sets it, see
/// `QMPBackend.Options.balloonStatsPeriod`); `rss` is the QEMU process's.
enum BalloonGroup {
    static let balloon = QMPQuery("query-balloon")
    static let memory = QMPQuery("query-memory-size-summary")
    /// Where balloon devices live in the QOM tree.
    static let peripheralLists = [
        QMPQuery("qom-list", ["path": "/machine/peripheral"]),
        QMPQuery("qom-list", ["path": "/machine/peripheral-anon"]),
    ]

    static func guestStats(path: String) -> QMPQuery {
        QMPQuery("qom-get", ["path": .string(path), "property": "guest-stats"])
    }

    static func pollingInterval(path: String) -> QMPQuery {
        QMPQuery("qom-get", ["path": .string(path), "property": "guest-stats-polling-interval"])
    }

    static func setPollingInterval(path: String, seconds: Int) -> QMPQuery {
        QMPQuery("qom-set", ["path": .string(path), "property": "guest-stats-polling-interval", "value": .int(Int64(seconds))])
    }

    /// The QOM path of the first virtio balloon in the listed containers, if any.
    static func balloonPath(lists: [(base: String, reply: JSONValue)]) throws(QMPError) -> String? {
        for (base, reply) in lists {
            for entry in try ReplyReader(command: "qom-list", value: reply).array() {
                let type = try entry.string("type")
                if type.hasPrefix("child<virtio-balloon") {
                    return base + "/" + (try entry.string("name"))
                }
            }
        }
        return nil
    }

    /// QEMU's guest-stats names, libvirt's keys, and the divisor to KiB (1 for counts).
    private static let guestKeys: [(qemu: String, key: String, divisor: UInt64)] = [
        ("stat-swap-in", "swap_in", 1024),
        ("stat-swap-out", "swap_out", 1024),
        ("stat-major-faults", "major_fault", 1),
        ("stat-minor-faults", "minor_fault", 1),
        ("stat-free-memory", "unused", 1024),
        ("stat-total-memory", "available", 1024),
        ("stat-available-memory", "usable", 1024),
        ("stat-disk-caches", "disk_caches", 1024),
        ("stat-htlb-pgalloc", "hugetlb_pgalloc", 1),
        ("stat-htlb-pgfail", "hugetlb_pgfail", 1),
    ]

    /// - Parameters:
    ///   - balloonActual: `query-balloon`'s `actual` in bytes, nil when the VM has no balloon.
    ///   - maximumBytes: the VM's memory (see `maximum(_:)`).
    ///   - guestStats: the `guest-stats` reply, when the balloon has one.
    ///   - rssBytes: the QEMU process's resident memory.
    static func params(balloonActual: UInt64?, maximumBytes maximum: UInt64, guestStats: JSONValue?, rssBytes: UInt64?) throws(QMPError) -> [StatsParam] {
        var w = ParamWriter()
        w.uint("balloon.current", (balloonActual ?? maximum) / 1024)
        w.uint("balloon.maximum", maximum / 1024)
        if let guestStats {
            let reader = try ReplyReader(command: "qom-get guest-stats", value: guestStats).object()
            let stats = try reader.member("stats").object()
            let lastUpdate = try reader.optionalInt("last-update") ?? 0
            // QEMU keeps a figure the guest did not send at -1, which its JSON writes as an unsigned
            // 2^64 - 1 (QEMU 7.2: `18446744073709551615`); last-update is 0 before the first report.
            if lastUpdate > 0 {
                for (qemu, key, divisor) in guestKeys {
                    guard let figure = stats.optionalMember(qemu), figure.value != .uint(.max), figure.value != .int(-1) else { continue }
                    w.uint("balloon.\(key)", try figure.uintValue() / divisor)
                }
                w.uint("balloon.last-update", UInt64(lastUpdate))
            }
        }
        if let rssBytes { w.uint("balloon.rss", rssBytes / 1024) }
        return w.params
    }

    /// The VM's memory from `query-memory-size-summary`: base plus hot-plugged (a sum past
    /// 2^64 - 1 is a reply no QEMU sends, refused rather than wrapped to a small size).
    static func maximum(_ memory: JSONValue) throws(QMPError) -> UInt64 {
        let summary = try ReplyReader(command: "query-memory-size-summary", value: memory).object()
        let base = try summary.uint("base-memory"), plugged = try summary.optionalUInt("plugged-memory") ?? 0
        let (total, overflow) = base.addingReportingOverflow(plugged)
        guard !overflow else {
            throw .unexpectedReply(command: "query-memory-size-summary",
                                   detail: "return: base-memory \(base) + plugged-memory \(plugged) passes 2^64 - 1")
        }
        return total
    }

    /// `query-balloon`'s size in bytes; a VM without a balloon answers with an error, which is nil here.
    static func actual(_ result: Result<JSONValue, QMPError>?) throws(QMPError) -> UInt64? {
        switch result {
        case .success(let reply)?:
            return try ReplyReader(command: "query-balloon", value: reply).object().uint("actual")
        case .failure(.commandFailed)?, nil:
            return nil
        case .failure(let error)?:
            throw error
        }
    }
}
