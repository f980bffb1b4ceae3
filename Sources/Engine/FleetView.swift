import Glibc

/// Which host's report of a VM is the fleet's view of it.
enum FleetView {
    /// Per UUID: a claim from a host that answers beats one from a stale host; then a
    /// running VM (`Up`) beats one that is not (a migration's source, or its destination
    /// before it runs); then the newest. The other claimants are listed in `alsoOn`.
    static func choose(_ claims: [(host: String, vm: VMReport)], hosts: [String: HostReport], now: Double) -> [FleetVM] {
        func rank(_ c: (host: String, vm: VMReport)) -> (Int, Int, Double) {
            let h = hosts[c.host]
            let answering = h.map { !isStale($0, now: now) } ?? false
            return (answering ? 1 : 0, c.vm.status == "Up" ? 1 : 0, c.vm.seen)
        }
        var best: [String: (host: String, vm: VMReport)] = [:]
        var all: [String: [String]] = [:]
        for c in claims {
            all[c.vm.uuid, default: []].append(c.host)
            if let b = best[c.vm.uuid], rank(b) >= rank(c) { continue }
            best[c.vm.uuid] = c
        }
        return best.values.map { b in
            FleetVM(host: b.host, report: b.vm, alsoOn: (all[b.vm.uuid] ?? []).filter { $0 != b.host }.sorted())
        }.sorted { ($0.report.name ?? $0.report.uuid, $0.report.uuid) < ($1.report.name ?? $1.report.uuid, $1.report.uuid) }
    }

    /// A host is stale when the engine says so, or when its last answer is older than its
    /// `staleAfter` (so a reader sees it also when the engine itself has stopped).
    static func isStale(_ h: HostReport, now: Double) -> Bool {
        if h.state == .stale { return true }
        guard let last = h.lastAnswer else { return true }
        return now - last > h.staleAfter
    }
}

/// Wall-clock time in Unix seconds (clock_gettime, without Foundation).
public enum WallClock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
