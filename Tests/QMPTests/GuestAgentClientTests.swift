import Foundation
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The guest-agent client against a scripted fake qemu-ga (named as such: a real guest
/// agent cannot be made to lie, stall or flood on cue; the real one is GuestAgentTests).
@Suite struct GuestAgentClientTests {
    static func peer(_ respond: @escaping @Sendable (String, JSONValue?) -> [ScriptedQMPPeer.Step]) async throws -> ScriptedQMPPeer {
        try await ScriptedQMPPeer(path: TempPaths.socket("qga"), onConnect: []) { command, arguments in
            // A sync is answered with its id, as qemu-ga does, unless the script says otherwise.
            // (qemu-ga puts a 0xFF byte before that reply; GuestAgentTests meets the real one.)
            if command == "guest-sync-delimited" { return [.reply(arguments?["id"] ?? .null)] }
            return respond(command, arguments)
        }
    }

    @Test func repliesAndErrorsAreTheCommands() async throws {
        let peer = try await Self.peer { command, _ in
            command == "guest-info" ? [.send("not json"), .send(#"{"event": "X"}"#), .reply(["version": "7.2.0"])]
                : [.error(errorClass: "CommandNotFound", description: "no \(command)")]
        }
        let client = try await GuestAgentClient.connect(socketPath: peer.path, timeout: .seconds(2))
        #expect(try await client.execute("guest-info", timeout: .seconds(2))["version"] == "7.2.0", "garbage and events are skipped")
        await #expect(throws: QMPError.self) { try await client.execute("guest-get-users", timeout: .seconds(2)) }
        do {
            _ = try await client.execute("guest-get-users", timeout: .seconds(2))
        } catch {
            guard case .commandFailed(_, let errorClass, _) = error else { Issue.record("\(error)"); return }
            #expect(errorClass == "CommandNotFound")
        }
        await client.close()
        await peer.stop()
    }

    @Test func aLateReplyIsNeverTakenForTheNextCommandsAnswer() async throws {
        let peer = try await Self.peer { command, _ in
            command == "slow" ? [.sleep(.milliseconds(600)), .reply("stale")] : [.reply(.string("fresh-\(command)"))]
        }
        let client = try await GuestAgentClient.connect(socketPath: peer.path, timeout: .seconds(2))
        await #expect(throws: QMPError.self) { try await client.execute("slow", timeout: .milliseconds(200)) }
        try await Task.sleep(for: .milliseconds(600))  // the stale reply has arrived by now
        #expect(try await client.execute("fast", timeout: .seconds(2)) == "fresh-fast")
        #expect(peer.commandsReceived == ["slow", "guest-sync-delimited", "fast"])
        await client.close()
        await peer.stop()
    }

    @Test func aSyncThatNeverMatchesIsAnError() async throws {
        let peer = try await ScriptedQMPPeer(path: TempPaths.socket("qga"), onConnect: []) { command, _ in
            command == "slow" ? [.sleep(.seconds(5))] : Array(repeating: .reply(42), count: 20)
        }
        let client = try await GuestAgentClient.connect(socketPath: peer.path, timeout: .seconds(2))
        await #expect(throws: QMPError.self) { try await client.execute("slow", timeout: .milliseconds(100)) }
        do {
            _ = try await client.execute("guest-info", timeout: .seconds(2))
            Issue.record("a guest agent that never answers the sync's id was believed")
        } catch {
            guard case .unexpectedReply = error else { Issue.record("\(error)"); return }
        }
        await client.close()
        await peer.stop()
    }

    @Test func aFloodOrAClosedPortEndsTheCallWithAnError() async throws {
        let flood = try await Self.peer { _, _ in [.flood(count: 4 << 20)] }
        let client = try await GuestAgentClient.connect(socketPath: flood.path, timeout: .seconds(2), maxLineBytes: 1 << 20)
        let started = ContinuousClock.now
        await #expect(throws: QMPError.self) { try await client.execute("guest-info", timeout: .seconds(5)) }
        #expect(ContinuousClock.now - started < .seconds(4), "the line limit, not the timeout, ended it")
        #expect(flood.floodBytesAccepted < 3 << 20)
        await client.close()
        await flood.stop()

        let closing = try await Self.peer { _, _ in [.close] }
        let c2 = try await GuestAgentClient.connect(socketPath: closing.path, timeout: .seconds(2))
        await #expect(throws: QMPError.self) { try await c2.execute("guest-info", timeout: .seconds(5)) }
        await #expect(throws: QMPError.self) { try await c2.execute("guest-info", timeout: .seconds(5)) }
        await c2.close()
        await closing.stop()

        do {
            _ = try await GuestAgentClient.connect(socketPath: TempPaths.socket("nobody"), timeout: .seconds(1))
            Issue.record("connected to nothing")
        } catch {
            guard case .noListener = error else { Issue.record("\(error)"); return }
        }
    }
}
