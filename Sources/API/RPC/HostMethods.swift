import Agent
import Hypervisor
import VMPulseCore

/// The engine verbs of the host API, answered from the agent's snapshots only: a call
/// never waits on QEMU or libvirt, and one stuck VM shows as an old `statsAge`.
public struct HostMethods: Sendable {
    let store: SnapshotStore
    let book: StatusBook?
    let thin: ThinStatusStore?
    let billing: BillingRecords?

    public init(store: SnapshotStore, book: StatusBook?, thin: ThinStatusStore?, billing: BillingRecords? = nil) {
        self.store = store
        self.book = book
        self.thin = thin
        self.billing = billing
    }

    /// One method: its parameter names (in positional order) and what it does.
    struct Method: Sendable {
        var params: [String]
        var run: @Sendable (HostMethods, RPCParams) throws(RPCError) -> JSONValue
    }

    static let methods: [String: Method] = [
        "Host.getAllVmRuntimeStats": Method(params: []) { m, _ in m.everyVM { view, now, wall in .object(view.runtime(now: now, wallNow: wall)) } },
        "Host.getAllVmDeviceStats": Method(params: []) { m, _ in m.everyVM { view, _, _ in .object(view.deviceStats) } },
        "VM.getStatus": Method(params: ["vmIDs"]) { m, p throws(RPCError) in try m.someVMs(p) { .object($0.statusInfo) } },
        "VM.getConfInfo": Method(params: ["vmIDs"]) { m, p throws(RPCError) in try m.someVMs(p) { .object($0.confInfo) } },
        "VM.getGuestDetails": Method(params: ["vmIDs"]) { m, p throws(RPCError) in try m.someVMs(p) { .object($0.guestDetails) } },
        "Host.getAllDomainStats": Method(params: ["groups", "vmIDs", "enforce"]) { m, p throws(RPCError) in try m.domainStats(p) },
        "Host.getBillingRecords": Method(params: ["after", "afterGap", "limit"]) { m, p throws(RPCError) in
            guard let billing = m.billing else { throw RPCError(RPCError.ledgerUnavailable, "this agent keeps no ledger") }
            return try billing.answer(p)
        },
        "rpc.discover": Method(params: []) { _, _ in OpenRPC.document },
    ]

    /// Answers one call (`subscribe` is the WebSocket's, see `RPCSocket`).
    public func call(_ call: RPCCall) -> Result<JSONValue, RPCError> {
        guard let method = Self.methods[call.method] else {
            if call.method == "subscribe" {
                return .failure(RPCError(RPCError.subscriptionRefused, "subscribe needs the WebSocket at /rpc; over HTTP there is nothing to push to"))
            }
            return .failure(RPCError(RPCError.methodNotFound, "no method \(call.method) (rpc.discover lists them)"))
        }
        do throws(RPCError) {
            let params = try RPCParams(call.params, method: call.method, names: method.params)
            return .success(try method.run(self, params))
        } catch {
            return .failure(error)
        }
    }

    func view(_ vm: VMSnapshot) -> VMView {
        VMView(vm: vm, entry: book?.entry(machine: vm.machine))
    }

    /// Every VM by UUID; a UUID two VMs claim gets an error in place of either one's data.
    func everyVM(_ body: (VMView, Double, Double) -> JSONValue) -> JSONValue {
        let now = MonotonicTime.now(), wall = MonotonicTime.wallNow()
        let vms = store.current()
        var out: [String: JSONValue] = [:]
        for (uuid, claims) in Dictionary(grouping: vms, by: \.uuid) {
            out[uuid] = claims.count == 1 ? body(view(claims[0]), now, wall) : Self.ambiguous(uuid, claims)
        }
        return .object(out)
    }

    /// The VMs named in `vmIDs` (UUIDs, or names), each answered or given its own error.
    func someVMs(_ params: RPCParams, _ body: (VMView) -> JSONValue) throws(RPCError) -> JSONValue {
        let ids = try params.strings("vmIDs", limit: 10_000) ?? []
        guard !ids.isEmpty else { throw RPCError(RPCError.invalidParams, "vmIDs must name at least one VM") }
        let vms = store.current()
        var out: [String: JSONValue] = [:]
        for id in ids {
            let claims = vms.filter { $0.uuid == id || $0.name == id }
            switch claims.count {
            case 0: out[id] = .object(["error": RPCError(RPCError.unknownVM, "no VM with UUID or name \(id) on this host").json])
            case 1: out[id] = body(view(claims[0]))
            default: out[id] = Self.ambiguous(id, claims)
            }
        }
        return .object(out)
    }

    static func ambiguous(_ id: String, _ claims: [VMSnapshot]) -> JSONValue {
        let names = claims.map(\.name).sorted().joined(separator: ", ")
        return .object(["error": RPCError(RPCError.ambiguousVM, "\(claims.count) VMs claim \(id) (\(names)); fix their identity, see /v1/health").json])
    }

    /// `Host.getAllDomainStats`: the records of `vmpulse stats` and `/v1/stats`.
    func domainStats(_ params: RPCParams) throws(RPCError) -> JSONValue {
        let groups = try params.strings("groups", limit: 100) ?? []
        let ids = try params.strings("vmIDs", limit: 10_000) ?? []
        let enforce = try params.bool("enforce") ?? false
        let selection: GroupSelection
        do {
            selection = try GroupSelection.resolve(
                requested: GroupSelection.names(fromList: groups), supported: StatsEndpoint.supportedGroups, enforce: enforce, backend: "agent")
        } catch {
            throw RPCError(RPCError.unsupportedGroup, error.description)
        }
        let wanted = Set(selection.groups)
        let now = MonotonicTime.now()
        let vms = store.current()
        var unknown: [String: JSONValue] = [:]
        var chosen = vms
        if !ids.isEmpty {
            chosen = vms.filter { ids.contains($0.uuid) || ids.contains($0.name) }
            for id in ids where !vms.contains(where: { $0.uuid == id || $0.name == id }) {
                unknown[id] = RPCError(RPCError.unknownVM, "no VM with UUID or name \(id) on this host").json
            }
        }
        let records: [JSONValue] = chosen.map { vm in
            let extra = wanted.contains(.thin) ? (thin?.params(vmName: vm.name, vmUUID: vm.uuid) ?? []) : []
            let record = vm.record(groups: wanted, now: now, extra: extra)
            var o: [String: JSONValue] = [
                "name": .string(record.name), "uuid": .string(record.uuid),
                "params": .object(Dictionary(record.params.map { ($0.key, $0.value.json) }, uniquingKeysWith: { a, _ in a })),
            ]
            if let age = record.statsAge { o["statsAge"] = .double(VMView.rounded(age, 1000)) }
            if !record.errors.isEmpty { o["errors"] = .array(record.errors.map { .string($0) }) }
            return .object(o)
        }
        var result: [String: JSONValue] = ["records": .array(records), "leftOut": .array(selection.leftOut.map { .string($0) })]
        if !unknown.isEmpty { result["unknown"] = .object(unknown) }
        return .object(result)
    }
}
