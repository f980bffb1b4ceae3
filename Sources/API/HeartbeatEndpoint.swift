import Agent
import Store
import VMPulseCore

/// `GET /v1/heartbeat`: every heartbeat link's state, counters, last actions (from the
/// action log, so that they outlive a restart; from memory when it cannot be read) and
/// the notices peers sent.
public enum HeartbeatEndpoint {
    public static func answer(_ links: [LinkStatus], log: ActionLog?, host: String, now: Double) -> StatsEndpoint.Answer {
        let items: [JSONValue] = links.map { l in
            var o: [String: JSONValue] = [
                "name": .string(l.name), "kind": .string(l.kind), "target": .string(l.target), "detector": .string(l.detector),
                "state": .string(l.state.rawValue), "state_seconds": .double(round(max(0, now - l.since))),
                "suspicion": .double(round(l.suspicion)), "pulses": .uint(l.pulses), "rejected": .uint(l.rejected),
                "forged": .uint(l.forged), "replayed": .uint(l.replayed), "failed_probes": .uint(l.failedProbes),
                "connections": .int(Int64(l.connections)), "actions_run": .uint(l.actionsRun), "actions_failed": .uint(l.actionsFailed),
                "dropped_transitions": .uint(l.droppedTransitions), "vms": .array(l.vms.map { .string($0) }),
            ]
            if let last = l.lastPulse { o["last_pulse_age"] = .double(round(max(0, now - last))) }
            if let p = l.lastProblem { o["last_problem"] = .string(p) }
            let recent = (try? log?.recent(link: l.name, limit: LinkStatus.keptActions)) ?? l.recentActions.reversed()
            o["recent_actions"] = .array(recent.map { a in
                var e: [String: JSONValue] = [
                    "time": .double(a.time), "transition": .string(a.transition), "action": .string(a.action),
                    "succeeded": .bool(a.succeeded), "detail": .string(a.detail),
                ]
                if let c = a.code { e["code"] = .int(Int64(c)) }
                return .object(e)
            })
            o["notices"] = .array(l.notices.reversed().map { n in
                .object(["time": .double(n.time), "from": .string(n.from), "link": .string(n.link), "state": .string(n.state.rawValue)])
            })
            return .object(o)
        }
        let body: JSONValue = .object(["host": .string(host), "links": .array(items)])
        return StatsEndpoint.Answer(status: 200, contentType: "application/json", body: JSONText.serialize(body) + "\n")
    }

    static func round(_ x: Double) -> Double { x.isFinite ? (x * 1000).rounded() / 1000 : 1e300 }
}
