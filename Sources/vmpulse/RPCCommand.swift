import Agent
import ArgumentParser
import Glibc
import VMPulseCore

/// `vmpulse rpc METHOD [PARAMS]`: one call of the agent's host API, for operators and scripts.
struct RPCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc",
        abstract: "Call a method of a running agent's JSON-RPC API and print its result.",
        discussion: """
            Methods: Host.getAllVmRuntimeStats, Host.getAllVmDeviceStats, Host.getAllDomainStats, \
            VM.getStatus, VM.getConfInfo, VM.getGuestDetails, rpc.discover. Parameters are one JSON \
            array or object, for example '{"vmIDs": ["web-1"]}'. Exit status 1 when the call fails.
            """
    )

    @Argument(help: "The method, for example Host.getAllVmRuntimeStats.") var method: String
    @Argument(help: "Its parameters as JSON (an object by name, or an array by position).") var params: String?
    @Option(help: "HOST:PORT of the agent (default: the configuration's listen address, else 127.0.0.1:9790).") var agent: String?
    @Option(help: "The agent's configuration file, for its address and token file.") var config: String?
    @Option(help: "Seconds to wait for the answer.") var timeout: Double = 10

    func run() async throws {
        let settings: AgentConfig
        let token: String?
        var request: [String: JSONValue] = ["jsonrpc": "2.0", "id": 1, "method": .string(method)]
        do {
            settings = try AgentSettings.load(file: config, listen: agent)
            token = try settings.api.loadTokens().first
            if let params {
                do throws(JSONParseError) { request["params"] = try JSONParser.parse(Array(params.utf8)) } catch {
                    throw ValidationError("the parameters are not JSON: \(error)")
                }
            }
        } catch {
            Stderr.write("vmpulse rpc: \(error)\n")
            throw ExitCode.failure
        }
        let (host, port) = try settings.listenAddress()
        let answer: AgentClient.Response
        do {
            answer = try await AgentClient.request(.POST, host: host, port: port, path: "/rpc", body: JSONText.serialize(.object(request)),
                                                   timeout: timeout, token: token)
        } catch {
            Stderr.write("vmpulse rpc: \(error) at \(host):\(port)\n")
            throw ExitCode.failure
        }
        guard let reply = try? JSONParser.parse(Array(answer.body.utf8)), case .object(let o) = reply else {
            Stderr.write("vmpulse rpc: the answer is not JSON-RPC (\(answer.summary))\n")
            throw ExitCode.failure
        }
        if let error = o["error"] {
            Stderr.write("vmpulse rpc: \(method): \(error["message"]?.stringValue ?? JSONText.serialize(error)) (code \(error["code"].map(JSONText.serialize) ?? "?"))\n")
            throw ExitCode.failure
        }
        print(JSONText.pretty(o["result"] ?? .null))
    }
}
