import Agent
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Hypervisor
import Logging
import NIOCore
import VMPulseCore

/// What the API reads: the agent's services, whose snapshots and statuses it serves.
public struct APIParts: Sendable {
    public var store: SnapshotStore
    public var ledger: LedgerService
    public var sampler: SamplerService
    public var thin: ThinStatusStore
    public var book: StatusBook?
    public var bus: AgentEventBus
    /// The heartbeat watchdog, when the agent runs one.
    public var heartbeat: HeartbeatService?
    /// The sampling interval, in seconds (exported with the metrics).
    public var interval: Double

    public init(store: SnapshotStore, ledger: LedgerService, sampler: SamplerService, thin: ThinStatusStore,
                book: StatusBook? = nil, bus: AgentEventBus = AgentEventBus(), interval: Double = 1, heartbeat: HeartbeatService? = nil) {
        self.heartbeat = heartbeat
        self.interval = interval
        self.store = store
        self.ledger = ledger
        self.sampler = sampler
        self.thin = thin
        self.book = book
        self.bus = bus
    }
}

/// The agent's HTTP API (Hummingbird): reads snapshots and statuses only.
public enum APIServer {
    /// An application serving `/v1/stats`, `/v1/thin`, `/v1/health` and the JSON-RPC API
    /// (`POST /rpc`, WebSocket `/rpc`) on `host:port`, holding at most
    /// `limits.maxConnections` connections and closing idle ones (see `ConnectionTable`).
    public static func application(
        host: String, port: Int, parts: APIParts, logger: Logger,
        limits: APILimits = APILimits(), access: APIAccess = APIAccess(),
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let store = parts.store, thin = parts.thin, ledger = parts.ledger, sampler = parts.sampler, heartbeat = parts.heartbeat
        // The `thin` and `heartbeat` groups come from their services, not the snapshots.
        let extra: @Sendable (String, String) -> [StatsParam] = { name, uuid in
            thin.params(vmName: name, vmUUID: uuid) + (heartbeat?.book.params(vmName: name, vmUUID: uuid, now: MonotonicTime.now()) ?? [])
        }
        let methods = HostMethods(store: store, book: parts.book, thin: thin, billing: BillingRecords(path: ledger.path))
        let router = Router()
        router.add(middleware: AccessMiddleware(access: access))
        router.get("/v1/stats") { request, _ -> Response in
            let q = request.uri.queryParameters
            let answer = StatsEndpoint.answer(
                groups: q[values: "group"].map(String.init), vms: q[values: "vm"].map(String.init),
                enforce: q["enforce"].map(String.init), format: q["format"].map(String.init),
                snapshot: store.current(), now: MonotonicTime.now(), thin: extra)
            return response(answer)
        }
        router.get("/v1/heartbeat") { _, _ -> Response in
            response(HeartbeatEndpoint.answer(heartbeat?.book.all() ?? [], log: heartbeat?.actionLog.withLock { $0 },
                                              host: heartbeat?.sender ?? "", now: MonotonicTime.now()))
        }
        router.get("/v1/thin") { _, _ -> Response in
            response(ThinEndpoint.answer(thin.all()))
        }
        router.get("/v1/health") { _, _ -> Response in
            response(HealthEndpoint.answer(ledger: ledger.status, hostError: sampler.hostError.withLock { $0 }, vms: store.current().count,
                                           identityConflicts: sampler.identities.conflicts, thinProblems: thin.problems()))
        }
        let interval = parts.interval
        router.get("/metrics") { request, _ -> Response in
            response(await MetricsEndpoint.answer(
                snapshot: store.current(), now: MonotonicTime.now(), thin: { thin.params(vmName: $0, vmUUID: $1) }, ledger: ledger.status,
                sampler: sampler.health.current, hostError: sampler.hostError.withLock { $0 },
                identityConflicts: sampler.identities.conflicts.count, interval: interval, accept: request.headers[.accept],
                parts: ProcessInfo.processInfo.activeProcessorCount, heartbeat: heartbeat?.book.all() ?? []))
        }
        addPanel(to: router, parts: parts, limits: limits, logger: logger)
        router.post("/rpc") { request, _ -> Response in
            var request = request
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: limits.maxBodyBytes)
            } catch {
                let refusal = RPCError(RPCError.invalidRequest, "the request body is over the limit of \(limits.maxBodyBytes) bytes (api.max_body_bytes)")
                return json(JSONRPC.failure(nil, refusal), status: .contentTooLarge)
            }
            guard let answer = JSONRPC.reply(body.readableBytesView, maxBatch: limits.maxBatch, call: methods.call) else {
                return Response(status: .noContent)
            }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: answer + "\n")))
        }
        let table = ConnectionTable(limit: limits.maxConnections)
        let timeout = TimeAmount(limits.idleTimeout)
        let socket = RPCSocket(methods: methods, bus: parts.bus, limits: limits, logger: logger)
        let sockets = RPCSocket.Count()
        let configuration = HTTP1WebSocketUpgradeChannel.Configuration(
            http1: .init(additionalChannelHandlers: [ConnectionLimitHandler(table: table, requestTimeout: timeout)], idleTimeout: timeout),
            // A client that does not answer a close frame holds its place for 2 s, not WSCore's 15.
            ws: .init(maxFrameSize: max(1 << 14, limits.maxBodyBytes), closeTimeout: .seconds(2)))
        let server = HTTPServerBuilder { responder in
            AdmittedChannel(table: table, timeout: timeout, base: HTTP1WebSocketUpgradeChannel(
                responder: responder, configuration: configuration
            ) { head, channel, _ in
                guard head.path == "/rpc", access.allows(head.headerFields) else { return .dontUpgrade }
                // Counted here, at the upgrade, so that a burst cannot pass the limit.
                guard sockets.open.add(1, ordering: .relaxed).newValue <= limits.maxSubscribers else {
                    sockets.open.subtract(1, ordering: .relaxed)
                    logger.notice("refusing a WebSocket: \(limits.maxSubscribers) are open (api.max_subscribers)")
                    return .dontUpgrade
                }
                table.start(channel, websocket: true)
                return .upgrade([:]) { inbound, outbound, _ in
                    await socket.serve(inbound: inbound, outbound: outbound, channel: channel, count: sockets)
                }
            })
        }
        return Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: "vmpulse"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    /// The panel: its static files at `/`, its data at `/v1/panel` and `/v1/panel/vm?id=`,
    /// and its live updates at `/v1/panel/stream`.
    static func addPanel(to router: Router<BasicRequestContext>, parts: APIParts, limits: APILimits, logger: Logger) {
        for (path, file) in PanelPage.files {
            router.get(RouterPath(path)) { _, _ -> Response in
                var headers: HTTPFields = [.contentType: file.contentType]
                for (name, value) in PanelPage.headers { if let field = HTTPField.Name(name) { headers[field] = value } }
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: file.body)))
            }
        }
        router.get("/v1/panel") { _, _ -> Response in
            json(PanelData.overview(parts.store.current(), book: parts.book, thin: parts.thin.all(), now: MonotonicTime.now(),
                                    wallNow: MonotonicTime.wallNow(), interval: parts.interval), status: .ok)
        }
        router.get("/v1/panel/vm") { request, _ -> Response in
            guard let id = request.uri.queryParameters["id"].map(String.init) else {
                return json(["error": .string("say which VM: /v1/panel/vm?id=ID, with an id from /v1/panel")], status: .badRequest)
            }
            guard let vm = parts.store.snapshot(machine: id) else {
                return json(["error": .string("no VM has the id \(id.prefix(200)) (the ids are in /v1/panel)")], status: .notFound)
            }
            return json(PanelData.detail(vm, book: parts.book, thin: parts.thin.all(), now: MonotonicTime.now(), wallNow: MonotonicTime.wallNow()),
                        status: .ok)
        }
        let stream = PanelStream(parts: parts, limits: limits, logger: logger)
        router.get("/v1/panel/stream") { request, _ -> Response in
            let vm = request.uri.queryParameters["vm"].map(String.init)
            // Echoed back in `gone` every interval: an id is a socket path or a domain name, never this long.
            if let vm, vm.utf8.count > 4096 {
                return json(["error": .string("the vm id is over 4096 bytes (the ids are in /v1/panel)")], status: .badRequest)
            }
            return stream.response(vm: vm)
        }
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: JSONText.serialize(value) + "\n")))
    }

    static func response(_ answer: StatsEndpoint.Answer) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = answer.contentType
        for (name, value) in answer.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(status: HTTPResponse.Status(code: answer.status), headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.bytes)))
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
