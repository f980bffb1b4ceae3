import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The host API against careless and hostile clients, on a real agent: each bad request
/// gets its error, the agent stays responsive to the others, and its memory stays bounded.
@Suite(.serialized) struct HostAPIBadInputTests {
    static func agent(_ bed: TestBed, _ yaml: String = "", listenHost: String = "127.0.0.1") async throws -> AgentProcess {
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     extraYAML: yaml, listenHost: listenHost)
        try await agent.waitReady()
        return agent
    }

    /// The agent's resident memory (VmRSS), in bytes.
    static func resident(_ agent: AgentProcess) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(agent.pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    /// A WebSocket to the agent, retried for up to 5 s while the agent is full.
    static func upgraded(_ agent: AgentProcess) async throws -> RawConnection {
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            let c = try RawConnection(port: agent.port)
            if try RawWebSocket.upgrade(c) == 101 { return c }
            guard ContinuousClock.now < deadline else { throw TestBedError("no WebSocket place came free within 5 s") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    static func code(_ r: HTTPGet.Response) -> Int64? {
        (try? JSONParser.parse(Array(r.body.utf8)))?["error"]?["code"]?.int64Value
    }

    @Test func eachBadRequestGetsItsErrorOverHTTP() async throws {
        let bed = try TestBed(prefix: "rpcbad")
        defer { bed.shutdown() }
        let agent = try await Self.agent(bed, "api:\n  max_body_bytes: 4096\n")
        let cases: [(String, Int64)] = [
            (#"{"jsonrpc": "2.0", "id": 1, "method": "rpc.discover""#, -32700),
            ("", -32700),
            (#"{"jsonrpc": "2.0", "id": 1}"#, -32600),
            (#"{"jsonrpc": "2.0", "id": 1, "method": "Host.getEverything"}"#, -32601),
            (#"{"jsonrpc": "2.0", "id": 1, "method": "VM.getStatus", "params": {"vmIDs": "not-a-list"}}"#, -32602),
            (#"{"jsonrpc": "2.0", "id": 1, "method": "VM.getStatus", "params": {"vmIDs": [18446744073709551615]}}"#, -32602),
            (#"{"jsonrpc": "2.0", "id": 1, "method": "Host.getAllDomainStats", "params": {"enforce": 1}}"#, -32602),
        ]
        for (body, expected) in cases {
            let r = try agent.post(Array(body.utf8))
            #expect(r.status == 200, "\(body)")
            #expect(Self.code(r) == expected, "\(body): \(r.body)")
        }
        // A notification gets no answer at all.
        #expect(try agent.post(Array(#"{"jsonrpc": "2.0", "method": "rpc.discover"}"#.utf8)).status == 204)
        // A body over api.max_body_bytes is refused before it is parsed, and the agent goes on.
        let big = try agent.post(Array(repeating: UInt8(ascii: " "), count: 1 << 20) + Array(#"{"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}"#.utf8))
        #expect(big.status == 413)
        #expect(Self.code(big) == -32600)
        #expect(try agent.health().status == 200)
        // rpc.discover answers under the limit.
        #expect(try agent.result("rpc.discover")["methods"]?.arrayValue?.count == 9)
        // vmpulse rpc: bad parameters are refused before anything is sent; an error answer is exit 1.
        let vmpulse = Spawn.builtProduct("vmpulse")
        let address = "127.0.0.1:\(agent.port)"
        let notJSON = try Spawn.capture(vmpulse, ["rpc", "--agent", address, "VM.getStatus", #"{"vmIDs": "#])
        #expect(notJSON.status == 1 && notJSON.stderr.contains("not JSON"), "\(notJSON.stderr)")
        let wrongType = try Spawn.capture(vmpulse, ["rpc", "--agent", address, "VM.getStatus", #"{"vmIDs": 3}"#])
        #expect(wrongType.status == 1 && wrongType.stderr.contains("-32602"), "\(wrongType.stderr)")
        let ok = try Spawn.capture(vmpulse, ["rpc", "--agent", address, "Host.getAllVmRuntimeStats"])
        #expect(ok.status == 0 && ok.stdout == "{}\n", "no VMs: an empty object, \(ok.stdout) \(ok.stderr)")
        #expect(try await agent.stop() == 0)
    }

    @Test func aBatchOfTenThousandCallsIsRefusedAndMemoryStaysBounded() async throws {
        let bed = try TestBed(prefix: "rpcbatch")
        defer { bed.shutdown() }
        let agent = try await Self.agent(bed)
        let before = Self.resident(agent)
        let call = #"{"jsonrpc": "2.0", "id": 7, "method": "Host.getAllVmRuntimeStats"}"#
        let batch = "[" + Array(repeating: call, count: 10_000).joined(separator: ",") + "]"  // 690 KB: under the body limit
        for _ in 0..<5 {
            let r = try agent.post(Array(batch.utf8))
            #expect(Self.code(r) == -32600)
            #expect(r.body.contains("10000"), "the error says how many: \(r.body.prefix(300))")
        }
        // A batch at the limit (1000) is answered whole.
        let allowed = "[" + Array(repeating: call, count: 1000).joined(separator: ",") + "]"
        let answered = try JSONParser.parse(Array(try agent.post(Array(allowed.utf8)).body.utf8))
        #expect(answered.arrayValue?.count == 1000)
        let after = Self.resident(agent)
        #expect(after - before < 64 << 20, "resident memory grew from \(before) to \(after)")
        #expect(try agent.health().status == 200)
        #expect(try await agent.stop() == 0)
    }

    @Test func aWebSocketClientThatNeverReadsIsCutOffAndNobodyWaits() async throws {
        let bed = try TestBed(prefix: "rpcslow")
        defer { bed.shutdown() }
        let agent = try await Self.agent(bed, "api:\n  subscriber_backlog: 16\n  max_subscribers: 2\n")
        let before = Self.resident(agent)
        // Subscribes, then sends call after call (each answer is the 5 KB OpenRPC document)
        // and never reads: the agent's queue for it fills and the agent closes it.
        let hostile = try RawConnection(port: agent.port, receiveBuffer: 4096)
        #expect(try RawWebSocket.upgrade(hostile) == 101)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(hostile.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        hostile.send(RawWebSocket.frame(#"{"jsonrpc": "2.0", "id": 0, "method": "subscribe"}"#))
        let call = RawWebSocket.frame(#"{"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}"#)
        var sent = 0
        while sent < 20_000, hostile.send(call) { sent += 1 }
        // Nothing is read until the agent says it cut the client off (reading would make it a reader).
        let deadline = ContinuousClock.now + .seconds(10)
        while !agent.logText.contains("closing a WebSocket client that does not read"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(agent.logText.contains("closing a WebSocket client that does not read"), "the agent kept a client that never reads (\(sent) calls sent)")
        // What it had queued is finite: read it, then the end.
        #expect(hostile.closedByPeer(within: .seconds(10)))
        // Meanwhile and after, others are answered at once.
        #expect(try agent.health().status == 200)
        #expect(try agent.result("rpc.discover")["openrpc"] == "1.2.6")
        let after = Self.resident(agent)
        #expect(after - before < 64 << 20, "resident memory grew from \(before) to \(after)")

        // Subscribers beyond api.max_subscribers are refused; a closed one makes room (once
        // its handler has ended: at most the 2 s close timeout after the connection closed).
        let one = try await Self.upgraded(agent)
        let two = try await Self.upgraded(agent)
        let three = try RawConnection(port: agent.port)
        #expect(try RawWebSocket.upgrade(three) == 400)
        one.send(RawWebSocket.frame(#"{"jsonrpc": "2.0", "id": 5, "method": "subscribe", "params": {"kinds": ["nonsense"]}}"#))
        let refused = try JSONParser.parse(Array(try RawWebSocket.readText(one).utf8))
        #expect(refused["error"]?["code"] == .int(-32602))
        // A WebSocket message over api.max_body_bytes (1 MiB) ends that connection.
        two.send(RawWebSocket.frame(String(repeating: " ", count: 2 << 20)))
        #expect(two.closedByPeer(within: .seconds(5)))
        _ = try await Self.upgraded(agent)
        // The upgrade is only at /rpc.
        let elsewhere = try RawConnection(port: agent.port)
        elsewhere.send(Array("GET /v1/stats HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8))
        #expect(try elsewhere.readHead().hasPrefix("HTTP/1.1 400"))
        #expect(try await agent.stop() == 0)
    }

    @Test func aListenerBeyondLoopbackNeedsATokenAndChecksIt() async throws {
        let bed = try TestBed(prefix: "rpctoken")
        defer { bed.shutdown() }
        // No token file: the agent refuses to start, and says what to do.
        do {
            let open = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                        listenHost: "0.0.0.0")
            try await open.waitReady(timeout: .seconds(10))
            Issue.record("the agent started on 0.0.0.0 without a token")
        } catch {
            #expect("\(error)".contains("api.token_file"), "\(error)")
        }
        let token = "engine-" + UUID().uuidString
        try "# the engine's token\n\(token)\n".write(toFile: bed.directory + "/tokens", atomically: true, encoding: .utf8)
        let agent = try await Self.agent(bed, "api:\n  token_file: \(bed.directory)/tokens\n", listenHost: "0.0.0.0")
        let call = Array(#"{"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}"#.utf8)
        #expect(try agent.post(call).status == 401)
        #expect(try agent.post(call, token: token + "x").status == 401)
        #expect(try agent.post(call, token: String(token.dropLast())).status == 401)
        #expect(try agent.post(call, token: token).status == 200)
        #expect(try HTTPGet.fetch(port: agent.port, path: "/v1/stats").status == 401)
        #expect(try HTTPGet.fetch(port: agent.port, path: "/v1/stats", headers: ["Authorization": "Bearer \(token)"]).status == 200)
        // The WebSocket too.
        #expect(try RawWebSocket.upgrade(RawConnection(port: agent.port)) == 400)
        #expect(try RawWebSocket.upgrade(RawConnection(port: agent.port), token: token) == 101)
        // vmpulse rpc and vmpulse stats read the token file named in the agent's configuration.
        let vmpulse = Spawn.builtProduct("vmpulse")
        let rpc = try Spawn.capture(vmpulse, ["rpc", "--config", agent.configPath, "--agent", "127.0.0.1:\(agent.port)", "rpc.discover"])
        #expect(rpc.status == 0, "\(rpc.stderr)")
        #expect(rpc.stdout.contains("\"openrpc\": \"1.2.6\""))
        let denied = try Spawn.capture(vmpulse, ["rpc", "--agent", "127.0.0.1:\(agent.port)", "rpc.discover"])
        #expect(denied.status != 0)
        #expect(denied.stderr.contains("bearer token"), "\(denied.stderr)")
        #expect(try await agent.stop() == 0)
    }
}
