import Agent
import HTTPTypes
import Hummingbird
import Hypervisor
import Logging
import NIOCore
import VMPulseCore

/// The agent's HTTP API (Hummingbird): reads snapshots and statuses only.
public enum APIServer {
    /// An application serving `/v1/stats` and `/v1/health` on `host:port`.
    public static func application(
        host: String, port: Int, store: SnapshotStore, ledger: LedgerService, sampler: SamplerService, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("/v1/stats") { request, _ -> Response in
            let q = request.uri.queryParameters
            let answer = StatsEndpoint.answer(
                groups: q[values: "group"].map(String.init), vms: q[values: "vm"].map(String.init),
                enforce: q["enforce"].map(String.init), format: q["format"].map(String.init),
                snapshot: store.current(), now: MonotonicTime.now())
            return response(answer)
        }
        router.get("/v1/health") { _, _ -> Response in
            response(HealthEndpoint.answer(ledger: ledger.status, hostError: sampler.hostError.withLock { $0 }, vms: store.current().count))
        }
        return Application(
            router: router,
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
/// well, 503 with `"status": "degraded"` when the ledger or the socket directory is not.
public enum HealthEndpoint {
    public static func answer(ledger: LedgerStatus, hostError: String?, vms: Int) -> StatsEndpoint.Answer {
        let degraded = ledger.state != .ok || hostError != nil
        var ledgerObject: [String: JSONValue] = ["state": .string(ledger.state.rawValue), "pending_periods": .int(Int64(ledger.pendingPeriods))]
        if let p = ledger.problem { ledgerObject["problem"] = .string(p) }
        if let w = ledger.lastWrite { ledgerObject["last_write"] = .double(w) }
        var body: [String: JSONValue] = ["status": .string(degraded ? "degraded" : "ok"), "vms": .int(Int64(vms)), "ledger": .object(ledgerObject)]
        if let hostError { body["host_problem"] = .string(hostError) }
        return StatsEndpoint.Answer(status: degraded ? 503 : 200, contentType: "application/json", body: JSONText.serialize(.object(body)) + "\n")
    }
}
