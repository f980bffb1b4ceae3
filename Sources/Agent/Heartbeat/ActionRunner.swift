import AsyncHTTPClient
import Foundation
import Hypervisor
import Logging
import NIOCore
import Store
import VMPulseCore

/// Runs a link's configured actions for one state change, one after another, each bounded
/// by its timeout, and records each outcome (the store, the book, the log, an event).
/// What runs is only ever what the local file says: a notice from a peer is recorded and
/// told, never acted on.
struct ActionRunner: Sendable {
    let backend: any HypervisorBackend
    let resolve: Probes.Resolve
    let book: HeartbeatBook
    let log: ActionLog?
    let bus: AgentEventBus?
    let logger: Logger
    let hostName: String
    /// Sends a notice over the named peer link; false when no such link runs.
    let notify: @Sendable (_ link: String, _ subject: String, _ state: LinkState) -> Bool
    /// The most a VM command may take.
    static let vmCommandTimeout = Duration.seconds(30)

    func run(_ link: LinkMonitor, _ change: LinkTransition) async {
        let config = link.config
        let transition = "\(change.from.rawValue)->\(change.to.rawValue)"
        let wall = MonotonicTime.wallNow()
        let level: Logger.Level = change.to == .alive ? .notice : (change.to == .dead ? .error : .warning)
        logger.log(level: level, "heartbeat link \(config.name) (\(Self.target(config))) is \(change.to.rawValue), was \(change.from.rawValue) (suspicion \(Self.round(change.suspicion)))")
        bus?.publish(AgentEvent(kind: .heartbeat, vm: "", name: config.name, data: [
            "from": .string(change.from.rawValue), "to": .string(change.to.rawValue), "suspicion": .double(Self.round(change.suspicion)),
            "target": .string(Self.target(config)),
        ], time: wall))
        for action in config.actions(from: change.from, to: change.to) {
            if Task.isCancelled { return }
            let (ok, code, detail) = await perform(action, config: config, change: change, wall: wall)
            let entry = ActionLog.Entry(time: MonotonicTime.wallNow(), link: config.name, transition: transition, action: action.description,
                                        succeeded: ok, code: code, detail: detail)
            if ok {
                logger.notice("heartbeat link \(config.name): \(action) for \(transition): \(detail)")
            } else {
                logger.error("heartbeat link \(config.name): \(action) for \(transition) failed: \(detail)")
            }
            do throws(LedgerError) { try log?.record(entry) } catch {
                logger.error("heartbeat link \(config.name): cannot record the outcome of \(action) in \(log?.path ?? "the store"): \(error)")
            }
            book.update(link.index) { s in
                s.actionsRun &+= 1
                if !ok { s.actionsFailed &+= 1 }
                s.recentActions.append(entry)
                if s.recentActions.count > LinkStatus.keptActions { s.recentActions.removeFirst(s.recentActions.count - LinkStatus.keptActions) }
            }
            bus?.publish(AgentEvent(kind: .heartbeatAction, vm: "", name: config.name, data: [
                "transition": .string(transition), "action": .string(action.description), "succeeded": .bool(ok),
                "detail": .string(String(detail.prefix(512))),
            ], time: entry.time))
        }
    }

    private func perform(_ action: HeartbeatAction, config: HeartbeatLinkConfig, change: LinkTransition, wall: Double) async -> (Bool, Int?, String) {
        switch action {
        case .program(let path, let arguments, let timeout):
            let lines = [
                "link=\(config.name)", "kind=\(Self.kind(config))", "target=\(Self.target(config))", "state=\(change.to.rawValue)",
                "previous=\(change.from.rawValue)", "suspicion=\(Self.round(change.suspicion))", "time=\(Int(wall))", "host=\(hostName)",
            ].map { Self.oneLine($0) }.joined(separator: "\n") + "\n"
            do throws(ProgramError) {
                let outcome = try await ProgramRunner.run(program: path, arguments: arguments, input: lines, timeout: .milliseconds(Int64(timeout * 1000)))
                if !outcome.output.isEmpty { logger.info("heartbeat link \(config.name): \(path) said: \(outcome.output.prefix(2048))") }
                if outcome.timedOut { return (false, outcome.code, "did not finish within \(timeout) s; killed") }
                let last = outcome.lastError
                return (outcome.succeeded, outcome.code, "exit code \(outcome.code)\(last.isEmpty ? "" : ": " + last)")
            } catch {
                return (false, nil, error.message)
            }
        case .vm(let name, let command):
            let machines = resolve(name)
            guard machines.count == 1, let machine = machines.first else {
                return (false, nil, machines.isEmpty ? "no VM named \(name) runs on this host" : "\(machines.count) VMs answer to \(name); none was sent the command")
            }
            let backend = self.backend
            let result: Result<Void, MachineError> = await withDeadline(Self.vmCommandTimeout) {
                do throws(MachineError) {
                    try await backend.perform(command, machine: machine)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            } fallback: {
                .failure(MachineError(.timeout, "no answer within \(Self.vmCommandTimeout)"))
            }
            switch result {
            case .success: return (true, nil, "\(HeartbeatAction.qmpName(command)) accepted by \(name)")
            case .failure(let error): return (false, nil, "\(HeartbeatAction.qmpName(command)) to \(name): \(error)")
            }
        case .notify(let target):
            let sent = notify(target, config.name, change.to)
            return sent ? (true, nil, "notice sent over \(target)") : (false, nil, "link \(target) has no open connection; the notice was not sent")
        case .webhook(let url, let retries, let timeout):
            return await webhook(url: url, retries: retries, timeout: timeout, config: config, change: change, wall: wall)
        }
    }

    private func webhook(url: String, retries: Int, timeout: Double, config: HeartbeatLinkConfig, change: LinkTransition, wall: Double) async -> (Bool, Int?, String) {
        let body = JSONText.serialize(.object([
            "host": .string(hostName), "link": .string(config.name), "kind": .string(Self.kind(config)), "target": .string(Self.target(config)),
            "from": .string(change.from.rawValue), "to": .string(change.to.rawValue), "suspicion": .double(Self.round(change.suspicion)),
            "time": .double(wall),
        ]))
        var last = ""
        for attempt in 0...retries {
            if attempt > 0 {
                guard (try? await Task.sleep(for: .seconds(min(30, 1 << (attempt - 1))))) != nil else { break }
            }
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "vmpulse")
            request.body = .bytes(ByteBuffer(string: body))
            do {
                let response = try await HTTPClient.shared.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
                _ = try? await response.body.collect(upTo: 65_536)
                if (200..<300).contains(response.status.code) {
                    return (true, Int(response.status.code), "\(url) answered \(response.status.code) (attempt \(attempt + 1))")
                }
                last = "\(url) answered \(response.status.code)"
            } catch {
                last = "\(url): \(error)"
            }
        }
        return (false, nil, "\(last), after \(retries + 1) attempts")
    }

    static func kind(_ c: HeartbeatLinkConfig) -> String {
        switch c.kind {
        case .peer: "peer"
        case .guest: "guest"
        case .service: "service"
        }
    }

    static func target(_ c: HeartbeatLinkConfig) -> String {
        switch c.kind {
        case .peer(let peer, let address, _): "\(peer)@\(address)"
        case .guest(let vm): vm
        case .service(let address, _, _): address
        }
    }

    static func round(_ x: Double) -> Double { x.isFinite ? (x * 1000).rounded() / 1000 : 1e300 }

    /// One `name=value` line: a line feed in a name would start another field.
    static func oneLine(_ s: String) -> String { s.replacingOccurrences(of: "\n", with: " ") }
}
