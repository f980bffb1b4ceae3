import VMPulseCore

/// `vmpulse engine status`: the fleet as the store holds it, in text or JSON.
public struct FleetStatus: Sendable {
    public var hosts: [HostReport]
    public var vms: [FleetVM]
    public var now: Double

    public init(hosts: [HostReport], vms: [FleetVM], now: Double) {
        self.hosts = hosts
        self.vms = vms
        self.now = now
    }

    public static func read(_ store: FleetStore, now: Double = WallClock.now()) async throws(FleetStoreError) -> FleetStatus {
        FleetStatus(hosts: try await store.hosts(), vms: try await store.vms(now: now), now: now)
    }

    func state(_ h: HostReport) -> String { FleetView.isStale(h, now: now) ? "stale" : "up" }

    /// Whether every host answers.
    public var allUp: Bool { hosts.allSatisfy { !FleetView.isStale($0, now: now) } }

    public var json: JSONValue {
        let hs: [JSONValue] = hosts.map { h in
            var o: [String: JSONValue] = ["name": .string(h.name), "address": .string(h.address), "state": .string(state(h)), "vmCount": .int(Int64(h.vmCount))]
            if let t = h.lastAnswer {
                o["lastAnswer"] = .string(BillingFormat.isoTime(t))
                o["lastAnswerAge"] = .double(Self.rounded(now - t))
            }
            if let p = h.problem { o["problem"] = .string(p) }
            return .object(o)
        }
        let vs: [JSONValue] = vms.map { v in
            var o: [String: JSONValue] = ["uuid": .string(v.report.uuid), "host": .string(v.host), "status": .string(v.report.status)]
            if let n = v.report.name { o["name"] = .string(n) }
            if let c = v.report.cpuUser { o["cpuUser"] = .double(c) }
            if let c = v.report.cpuSys { o["cpuSys"] = .double(c) }
            if let m = v.report.memUsage { o["memUsage"] = .double(m) }
            if let a = v.report.statsAge { o["statsAge"] = .double(a) }
            o["seenAge"] = .double(Self.rounded(now - v.report.seen))
            if !v.alsoOn.isEmpty { o["alsoOn"] = .array(v.alsoOn.map { .string($0) }) }
            return .object(o)
        }
        return .object(["hosts": .array(hs), "vms": .array(vs)])
    }

    public var text: String {
        var hostRows = [["HOST", "STATE", "LAST ANSWER", "AGO", "VMS", "ADDRESS", "PROBLEM"]]
        for h in hosts {
            hostRows.append([h.name, state(h), h.lastAnswer.map(BillingFormat.isoTime) ?? "never",
                             h.lastAnswer.map { Self.seconds(now - $0) } ?? "-", String(h.vmCount), h.address, String((h.problem ?? "").prefix(120))])
        }
        var vmRows = [["VM", "UUID", "HOST", "STATUS", "CPU%", "MEM%", "STATS AGE"]]
        for v in vms {
            let cpu = v.report.cpuUser.map { u in String(Self.rounded(u + (v.report.cpuSys ?? 0))) } ?? "-"
            vmRows.append([v.report.name ?? "-", v.report.uuid, v.host + (v.alsoOn.isEmpty ? "" : " (+\(v.alsoOn.joined(separator: ",")))"),
                           v.report.status, cpu, v.report.memUsage.map { String(Self.rounded($0)) } ?? "-",
                           v.report.statsAge.map(Self.seconds) ?? "-"])
        }
        return Self.table(hostRows) + "\n" + Self.table(vmRows)
    }

    static func table(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.first?.count ?? 0)).map { i in rows.map { $0[i].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count) }
                .joined(separator: "  ").trimmingTrailingSpaces()
        }.joined(separator: "\n") + "\n"
    }

    static func rounded(_ v: Double) -> Double { (v * 100).rounded() / 100 }
    static func seconds(_ v: Double) -> String { "\(rounded(v)) s" }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
