import Agent
import HTTPTypes
import Hummingbird
import Hypervisor
import Logging
import NIOCore
import VMPulseCore

/// The agent's HTTP API (Hummingbird): reads snapshots and statuses only.
public enum APIServer {
    /// An application serving `/v1/stats` and `/v1/health` on `host:port`, holding at most
    /// `limits.maxConnections` connections and closing idle ones (see `ConnectionTable`).
    public static func application(
        host: String, port: Int, store: SnapshotStore, ledger: LedgerService, sampler: SamplerService, thin: ThinStatusStore, logger: Logger,
        limits: APILimits = APILimits(),
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("/v1/stats") { request, _ -> Response in
            let q = request.uri.queryParameters
            let answer = StatsEndpoint.answer(
                groups: q[values: "group"].map(String.init), vms: q[values: "vm"].map(String.init),
                enforce: q["enforce"].map(String.init), format: q["format"].map(String.init),
                snapshot: store.current(), now: MonotonicTime.now(), thin: thin.params(vmName:vmUUID:))
            return response(answer)
        }
        router.get("/v1/thin") { _, _ -> Response in
            response(ThinEndpoint.answer(thin.all()))
        }
        router.get("/v1/health") { _, _ -> Response in
            response(HealthEndpoint.answer(ledger: ledger.status, hostError: sampler.hostError.withLock { $0 }, vms: store.current().count,
                                           identityConflicts: sampler.identities.conflicts, thinProblems: thin.problems()))
        }
        let table = ConnectionTable(limit: limits.maxConnections)
        let timeout = TimeAmount(limits.idleTimeout)
        return Application(
            router: router,
            server: .http1(configuration: .init(
                additionalChannelHandlers: [ConnectionLimitHandler(table: table, requestTimeout: timeout)], idleTimeout: timeout)),
            configuration: .init(address: .hostname(host, port: port), serverName: "vmpulse"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    static func response(_ answer: StatsEndpoint.Answer) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = answer.contentType
        for (name, value) in answer.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(status: HTTPResponse.Status(code: answer.status), headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(string: answer.body)))
    }
}

/// `GET /v1/health`: the agent, its ledger and its host, as JSON. 200 when all is
/// well, 503 with `"status": "degraded"` when the ledger or the socket directory is not, or
/// when two running VMs claim one identity (`identity_conflicts`), or when a thin disk
/// cannot do its work (`thin_problems`, naming each disk).
public enum HealthEndpoint {
    public static func answer(ledger: LedgerStatus, hostError: String?, vms: Int,
                              identityConflicts: [LedgerKeys.Conflict] = [], thinProblems: [ThinDiskStatus] = []) -> StatsEndpoint.Answer {
        let degraded = ledger.state != .ok || hostError != nil || !identityConflicts.isEmpty || !thinProblems.isEmpty
        var ledgerObject: [String: JSONValue] = ["state": .string(ledger.state.rawValue), "pending_periods": .int(Int64(ledger.pendingPeriods))]
        if let p = ledger.problem { ledgerObject["problem"] = .string(p) }
        if let w = ledger.lastWrite { ledgerObject["last_write"] = .double(w) }
        // Readings a full buffer dropped before the ledger writer got them (see ObservationSink).
        ledgerObject["dropped_observations"] = .uint(ledger.droppedObservations)
        if !ledger.droppedByVM.isEmpty { ledgerObject["dropped_observations_by_vm"] = .object(ledger.droppedByVM.mapValues { .uint($0) }) }
        var body: [String: JSONValue] = ["status": .string(degraded ? "degraded" : "ok"), "vms": .int(Int64(vms)), "ledger": .object(ledgerObject)]
        if let hostError { body["host_problem"] = .string(hostError) }
        if !identityConflicts.isEmpty {
            body["identity_conflicts"] = .array(identityConflicts.map { c in
                .object(["claim": .string(c.claim), "sockets": .array(c.sockets.map { .string($0) }), "problem": .string(c.description)])
            })
        }
        if !thinProblems.isEmpty {
            body["thin_problems"] = .array(thinProblems.map { d in
                .object(["disk": .string(d.label), "state": .string(d.state), "problem": .string(d.problem ?? d.reason ?? d.state)])
            })
        }
        return StatsEndpoint.Answer(status: degraded ? 503 : 200, contentType: "application/json", body: JSONText.serialize(.object(body)) + "\n")
    }
}

/// `GET /v1/thin`: every configured thin disk with its recent event-to-mark cycles, as JSON.
public enum ThinEndpoint {
    public static func answer(_ disks: [ThinDiskStatus]) -> StatsEndpoint.Answer {
        let items: [JSONValue] = disks.map { d in
            var o: [String: JSONValue] = [
                "disk": .string(d.label), "vm": .string(d.vm), "drive": .string(d.drive), "state": .string(d.state),
                "physical": .uint(d.physical), "extensions": .int(Int64(d.extensions)),
                "failures": .int(Int64(d.failures)), "pauses_recovered": .int(Int64(d.pausesRecovered)), "paused": .bool(d.pausedForSpace),
                "recent_cycles_ms": .array(d.recentCyclesMs.map { .double($0) }),
            ]
            if let v = d.node { o["node"] = .string(v) }
            if let v = d.mark { o["threshold"] = .uint(v) }
            if let v = d.reason { o["reason"] = .string(v) }
            if let v = d.problem { o["problem"] = .string(v) }
            if let v = d.maximum { o["maximum"] = .uint(v) }
            if let v = d.lastExtensionMs { o["last_extension_ms"] = .double(v) }
            if let v = d.lastCycleMs { o["last_cycle_ms"] = .double(v) }
            return .object(o)
        }
        return StatsEndpoint.Answer(status: 200, contentType: "application/json", body: JSONText.serialize(.array(items)) + "\n")
    }
}
