import Agent
import ArgumentParser
import Foundation
import VMPulseCore

/// `vmpulse heartbeat status`: the heartbeat links of a running agent.
struct HeartbeatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heartbeat",
        abstract: "The heartbeat watchdog of a running agent.",
        subcommands: [Status.self]
    )

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print each heartbeat link's state, counters and last actions with their outcomes.",
            discussion: "Exit status 0 when every link is alive, 3 when one is suspect or dead, 1 when the agent cannot be asked."
        )

        @Flag(help: "Print the agent's JSON as it is.") var json = false
        @Option(help: "HOST:PORT of the agent (default: the configuration's listen address, else 127.0.0.1:9790).") var agent: String?
        @Option(help: "The agent's configuration file, for its address and token file.") var config: String?
        @Option(help: "Seconds to wait for the answer.") var timeout: Double = 5

        func run() async throws {
            let settings: AgentConfig
            let token: String?
            do {
                settings = try AgentSettings.load(file: config, listen: agent)
                token = try settings.api.loadTokens().first
            } catch {
                Stderr.write("vmpulse heartbeat: \(error)\n")
                throw ExitCode.failure
            }
            let (host, port) = try settings.listenAddress()
            let answer: AgentClient.Response
            do {
                answer = try await AgentClient.get(host: host, port: port, path: "/v1/heartbeat", timeout: timeout, token: token)
            } catch {
                Stderr.write("vmpulse heartbeat: \(error) at \(host):\(port)\n")
                throw ExitCode.failure
            }
            guard answer.status == 200, let body = try? JSONParser.parse(Array(answer.body.utf8)), let links = body["links"]?.arrayValue else {
                Stderr.write("vmpulse heartbeat: the answer is not the agent's heartbeat status (\(answer.summary))\n")
                throw ExitCode.failure
            }
            if json {
                print(JSONText.pretty(body))
            } else {
                print(Self.text(links, host: body["host"]?.stringValue ?? ""), terminator: "")
            }
            if links.contains(where: { $0["state"]?.stringValue != "alive" }) { throw ExitCode(3) }
        }

        static func text(_ links: [JSONValue], host: String) -> String {
            guard !links.isEmpty else { return "no heartbeat links are configured (heartbeat.links in the agent's configuration)\n" }
            var out = "heartbeat of \(host)\n"
            for l in links {
                func s(_ k: String) -> String { l[k]?.stringValue ?? "" }
                func n(_ k: String) -> String { l[k].map { JSONText.serialize($0) } ?? "-" }
                out += "\n\(s("name")) (\(s("kind")) \(s("target")), \(s("detector"))): \(s("state").uppercased()) for \(n("state_seconds")) s\n"
                out += "  suspicion \(n("suspicion")), last pulse \(l["last_pulse_age"].map { JSONText.serialize($0) + " s ago" } ?? "never"), "
                out += "pulses \(n("pulses")), rejected \(n("rejected")) (forged \(n("forged")), replayed \(n("replayed"))), failed probes \(n("failed_probes")), "
                out += "connections \(n("connections")), actions \(n("actions_run")) (failed \(n("actions_failed")))\n"
                if let p = l["last_problem"]?.stringValue { out += "  last problem: \(p)\n" }
                for a in l["recent_actions"]?.arrayValue ?? [] {
                    let when = a["time"]?.doubleValue.map { Date(timeIntervalSince1970: $0).ISO8601Format() } ?? "?"
                    let ok = a["succeeded"]?.boolValue == true ? "ok" : "FAILED"
                    out += "  \(when) \(a["transition"]?.stringValue ?? "") \(a["action"]?.stringValue ?? ""): \(ok), \(a["detail"]?.stringValue ?? "")\n"
                }
                for x in l["notices"]?.arrayValue ?? [] {
                    out += "  notice from \(x["from"]?.stringValue ?? ""): its link \(x["link"]?.stringValue ?? "") is \(x["state"]?.stringValue ?? "")\n"
                }
            }
            return out
        }
    }
}
