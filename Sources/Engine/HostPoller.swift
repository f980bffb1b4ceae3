import Logging
import VMPulseCore

/// Polls one agent the way the split verbs are meant to be used: the runtime view every
/// `runtimeInterval`, `VM.getConfInfo` / `VM.getStatus` / `VM.getGuestDetails` only for
/// the VMs whose hash changed (one call per verb with all their ids), the device stats
/// every `deviceInterval`, and the ledger every `billingInterval`.
///
/// One poller per host, in a task of its own: a host that is down or slow holds up no
/// other. After a failed poll it waits one interval, then doubles up to four; it is
/// stale from the `staleAfter`-th failed poll in a row.
public actor HostPoller {
    let rpc: AgentRPC
    let config: EngineConfig
    let keeper: StoreKeeper
    let logger: Logger
    var name: String { rpc.endpoint.name }

    /// What this poller knows of each VM: the hashes its details were fetched for, the details.
    struct Known {
        var hashes: [String: String] = [:]
        var conf: JSONValue?
        var statusInfo: JSONValue?
        var guest: JSONValue?
        var devices: JSONValue?
        var status: String?
    }
    var known: [String: Known] = [:]
    var lastAnswer: Double?
    var failures = 0
    var lastDevices = -Double.infinity
    var lastBilling = -Double.infinity
    var cursor: BillingCursor?
    var problem: String?
    /// The VMs of the last answered poll, as saved (an event changes one of them in place).
    var lastReports: [VMReport] = []
    public private(set) var traffic = Traffic()

    /// Calls and bytes on the wire, by method (for `make bench-engine`).
    public struct Traffic: Sendable, Equatable {
        public var calls: [String: Int] = [:]
        public var bytes: [String: Int] = [:]
        public var totalCalls: Int { calls.values.reduce(0, +) }
        public var totalBytes: Int { bytes.values.reduce(0, +) }
    }

    public init(rpc: AgentRPC, config: EngineConfig, keeper: StoreKeeper, logger: Logger) {
        self.rpc = rpc
        self.config = config
        self.keeper = keeper
        self.logger = logger
    }

    /// Polls until cancelled.
    public func run() async {
        while !Task.isCancelled {
            let ok = await poll()
            let factor = ok ? 1.0 : Double(min(1 << max(0, failures - 1), 4))
            try? await Task.sleep(for: .milliseconds(Int64(config.runtimeInterval * factor * 1000)))
        }
    }

    func call(_ method: String, _ params: JSONValue? = nil) async throws(AgentCallError) -> JSONValue {
        do {
            let (result, bytes) = try await rpc.call(method, params)
            traffic.calls[method, default: 0] += 1
            traffic.bytes[method, default: 0] += bytes
            return result
        } catch {
            traffic.calls[method, default: 0] += 1
            throw error
        }
    }

    /// One round; true when the runtime view was answered.
    @discardableResult
    public func poll() async -> Bool {
        let now = WallClock.now()
        let runtime: [VMReport]
        var problems: [String] = []
        do {
            let result = try await call("Host.getAllVmRuntimeStats")
            do throws(AgentAnswers.Invalid) {
                (runtime, problems) = try AgentAnswers.runtime(result, seen: now)
            } catch {
                throw AgentCallError.badAnswer(host: name, method: "Host.getAllVmRuntimeStats", why: error.description)
            }
        } catch {
            failures += 1
            problem = "\(error)"
            if failures == 1 || failures % 100 == 0 { logger.warning("\(error) (failed poll \(failures) in a row)") }
            await keeper.save(host: report(now: now, vmCount: known.count), vms: nil, changes: [])
            return false
        }
        if failures > 0 { logger.notice("agent \(name) answers again after \(failures) failed poll(s)") }
        failures = 0
        lastAnswer = now
        problems += await fetchDetails(runtime)
        if now - lastDevices >= config.deviceInterval {
            if let p = await fetchDevices(runtime.map(\.uuid)) { problems.append(p) } else { lastDevices = now }
        }
        var changes: [StatusChange] = []
        var reports: [VMReport] = []
        for var vm in runtime {
            let k = known[vm.uuid] ?? Known()
            if k.status != vm.status {
                changes.append(StatusChange(host: name, uuid: vm.uuid, at: now, from: k.status, to: vm.status, source: "poll"))
                known[vm.uuid, default: Known()].status = vm.status
            }
            vm.conf = k.conf
            vm.statusInfo = k.statusInfo
            vm.guest = k.guest
            vm.devices = k.devices
            vm.name = k.conf?["vmName"]?.stringValue
            reports.append(vm)
        }
        let gone = Set(known.keys).subtracting(runtime.map(\.uuid))
        for uuid in gone.sorted() {
            changes.append(StatusChange(host: name, uuid: uuid, at: now, from: known[uuid]?.status, to: "Gone", source: "poll"))
            known[uuid] = nil
        }
        problem = problems.isEmpty ? nil : problems.joined(separator: "; ")
        lastReports = reports
        await keeper.save(host: report(now: now, vmCount: reports.count), vms: reports, changes: changes)
        if now - lastBilling >= config.billingInterval {
            if await copyBilling() { lastBilling = now }
        }
        return true
    }

    /// A status the agent pushed: recorded at once, before the next poll. Only for a VM the
    /// last poll listed (an event cannot add a VM the engine has not seen).
    func statusEvent(uuid: String, status: String) async {
        guard let i = lastReports.firstIndex(where: { $0.uuid == uuid }), lastReports[i].status != status else { return }
        let now = WallClock.now()
        let change = StatusChange(host: name, uuid: uuid, at: now, from: lastReports[i].status, to: status, source: "event")
        lastReports[i].status = status
        known[uuid, default: Known()].status = status
        await keeper.save(host: report(now: now, vmCount: lastReports.count), vms: lastReports, changes: [change])
    }

    func report(now: Double, vmCount: Int) -> HostReport {
        HostReport(name: name, address: "\(rpc.endpoint.host):\(rpc.endpoint.port)", state: failures >= config.staleAfter ? .stale : .up,
                   lastAnswer: lastAnswer, lastAttempt: now, problem: problem, vmCount: vmCount,
                   staleAfter: Double(config.staleAfter) * config.runtimeInterval + config.timeout + config.runtimeInterval)
    }

    /// The detail verbs for the VMs whose hashes changed. A verb that fails leaves those
    /// hashes unknown, so that the next poll asks again; the runtime view is kept.
    func fetchDetails(_ runtime: [VMReport]) async -> [String] {
        let verbs: [(method: String, hashes: [String])] = [
            ("VM.getConfInfo", ["info", "config"]), ("VM.getStatus", ["status"]), ("VM.getGuestDetails", ["guestDetails"]),
        ]
        var problems: [String] = []
        for verb in verbs {
            let ids = runtime.filter { vm in verb.hashes.contains { vm.hashes[$0] != known[vm.uuid]?.hashes[$0] } }.map(\.uuid)
            guard !ids.isEmpty else { continue }
            for chunk in stride(from: 0, to: ids.count, by: 10_000).map({ Array(ids[$0..<min($0 + 10_000, ids.count)]) }) {
                do {
                    let result = try await call(verb.method, .object(["vmIDs": .array(chunk.map { .string($0) })]))
                    let answers: [String: JSONValue]
                    do throws(AgentAnswers.Invalid) { answers = try AgentAnswers.perVM(result, asked: chunk) } catch {
                        throw AgentCallError.badAnswer(host: name, method: verb.method, why: error.description)
                    }
                    for vm in runtime where answers[vm.uuid] != nil {
                        var k = known[vm.uuid] ?? Known()
                        switch verb.method {
                        case "VM.getConfInfo": k.conf = answers[vm.uuid]
                        case "VM.getStatus": k.statusInfo = answers[vm.uuid]
                        default: k.guest = answers[vm.uuid]
                        }
                        for h in verb.hashes { k.hashes[h] = vm.hashes[h] }
                        known[vm.uuid] = k
                    }
                } catch {
                    problems.append("\(error)")
                }
            }
        }
        return problems
    }

    func fetchDevices(_ uuids: [String]) async -> String? {
        do {
            let result = try await call("Host.getAllVmDeviceStats")
            let answers: [String: JSONValue]
            do throws(AgentAnswers.Invalid) { answers = try AgentAnswers.perVM(result, asked: uuids) } catch {
                throw AgentCallError.badAnswer(host: name, method: "Host.getAllVmDeviceStats", why: error.description)
            }
            for (uuid, v) in answers { known[uuid, default: Known()].devices = v }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Copies the agent's ledger rows written since the store's cursor, a page at a time,
    /// each page with its cursor in one transaction. True when it got to the end.
    @discardableResult
    public func copyBilling(maxPages: Int = 100) async -> Bool {
        if cursor == nil {
            let host = name
            guard let c = await keeper.with({ store throws(FleetStoreError) in try await store.cursor(host: host) }) else { return false }
            cursor = c ?? BillingCursor(ledger: "", revision: 0, gap: 0)
        }
        for _ in 0..<maxPages {
            guard let c = cursor else { return false }
            do {
                var page = try await billingPage(after: c)
                if page.ledger != c.ledger && (c.revision > 0 || c.gap > 0) {
                    // Another ledger than the cursor's (replaced or restored on the host): from its start.
                    logger.notice("agent \(name) has a new ledger (\(page.ledger), was \(c.ledger)); copying it from the start")
                    page = try await billingPage(after: BillingCursor(ledger: page.ledger, revision: 0, gap: 0))
                }
                let host = name, copied = page
                guard await keeper.with({ store throws(FleetStoreError) in try await store.copy(copied, host: host) }) != nil else {
                    cursor = nil  // read it again from the store when it is back
                    return false
                }
                cursor = BillingCursor(ledger: page.ledger, revision: page.next, gap: page.nextGap)
                if !page.more { return true }
            } catch {
                problem = "\(error)"
                logger.warning("\(error)")
                return false
            }
        }
        return false
    }

    func billingPage(after c: BillingCursor) async throws(AgentCallError) -> BillingPage {
        let result = try await call("Host.getBillingRecords", .object(["after": .int(c.revision), "afterGap": .int(c.gap), "limit": 1000]))
        do throws(AgentAnswers.Invalid) {
            return try AgentAnswers.billing(result)
        } catch {
            throw AgentCallError.badAnswer(host: name, method: "Host.getBillingRecords", why: error.description)
        }
    }
}
