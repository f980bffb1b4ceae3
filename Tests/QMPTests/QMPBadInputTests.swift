import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Bad input from a monitor, produced by a scripted fake peer (a real QEMU never sends these).
/// Each case must become a typed error, promptly, without crashing or hanging.
@Suite struct QMPBadInputTests {
    var fast: QMPClientOptions {
        var o = QMPClientOptions()
        o.connectTimeout = .seconds(2)
        o.commandTimeout = .seconds(2)
        return o
    }

    /// Connects to a peer that answers `command` with `steps`, runs it, and returns the error.
    func error(answering steps: [ScriptedQMPPeer.Step], options: QMPClientOptions? = nil) async throws -> QMPError? {
        let peer = try await ScriptedQMPPeer.answering(path: TempPaths.socket()) { command, _ in
            command == "query-status" ? steps : []
        }
        defer { Task { await peer.stop() } }
        let client = try await QMPClient.connect(socketPath: peer.path, options: options ?? fast)
        defer { Task { await client.close() } }
        do {
            _ = try await client.execute("query-status")
            return nil
        } catch {
            return error
        }
    }

    @Test func garbageIsAMalformedMessage() async throws {
        let error = try await error(answering: [.send("this is not json")])
        guard case .malformedMessage(let reason, let excerpt)? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        #expect(reason.contains("not JSON"))
        #expect(excerpt.contains("this is not json"))
    }

    @Test func jsonThatIsNotAMessageIsMalformed() async throws {
        let error = try await error(answering: [.send(#"[1, 2, 3]"#)])
        guard case .malformedMessage(let reason, _)? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        #expect(reason.contains("expected a JSON object"))
    }

    @Test func truncatedLineThenCloseIsAClosedConnection() async throws {
        let error = try await error(answering: [.sendRaw(#"{"return": {"status": "runn"#), .close])
        guard case .connectionClosed(let detail)? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        #expect(detail.contains("in the middle of a message"))
    }

    @Test func replyWithUnknownIDIsAProtocolViolation() async throws {
        let error = try await error(answering: [.replyWithID(["status": "running"], id: 999_999)])
        guard case .unexpectedMessage(let detail)? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        #expect(detail.contains("unknown id 999999"))
    }

    @Test func replyWithANonNumericIDIsAProtocolViolation() async throws {
        let error = try await error(answering: [.replyWithID(["status": "running"], id: "abc")])
        guard case .unexpectedMessage? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
    }

    @Test func errorReplyFailsOnlyThatCommand() async throws {
        let peer = try await ScriptedQMPPeer.answering(path: TempPaths.socket()) { command, _ in
            command == "query-status" ? [.error(errorClass: "GenericError", description: "no can do")] : [.reply(["name": "vm"])]
        }
        defer { Task { await peer.stop() } }
        let client = try await QMPClient.connect(socketPath: peer.path, options: fast)
        await #expect(throws: QMPError.commandFailed(command: "query-status", errorClass: "GenericError", description: "no can do")) {
            try await client.execute("query-status")
        }
        // The connection is still good.
        #expect(try await client.execute("query-name") == ["name": "vm"])
        await client.close()
    }

    @Test func errorWithoutIDIsAProtocolViolation() async throws {
        let error = try await error(answering: [.send(#"{"error": {"class": "GenericError", "desc": "JSON parse error"}}"#)])
        guard case .unexpectedMessage(let detail)? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        #expect(detail.contains("without an id"))
    }

    @Test func errorReplyWithoutClassIsMalformed() async throws {
        let error = try await error(answering: [.send(#"{"error": {"desc": 5}, "id": 2}"#)])
        guard case .malformedMessage? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
    }

    @Test func tenMegabyteLineIsRefusedWithBoundedMemory() async throws {
        let peer = try await ScriptedQMPPeer.answering(path: TempPaths.socket()) { command, _ in
            command == "query-status" ? [.flood(count: 10_000_000)] : []
        }
        defer { Task { await peer.stop() } }
        var options = fast
        options.maxMessageBytes = 1 << 20
        let client = try await QMPClient.connect(socketPath: peer.path, options: options)
        let before = TempPaths.residentBytes()
        await #expect(throws: QMPError.messageTooLarge(limit: 1 << 20)) {
            try await client.execute("query-status")
        }
        // The client stopped reading at the limit: the peer could not hand over the
        // whole 10 MB (the rest is at most the socket buffers), and memory stayed flat.
        try await Task.sleep(for: .milliseconds(200))
        #expect(peer.floodBytesAccepted < 10_000_000 / 2, "peer sent \(peer.floodBytesAccepted) bytes")
        #expect(TempPaths.residentBytes() - before < 8 << 20)
        #expect(!client.isActive)
    }

    @Test func closeMidReplyFailsEveryPendingCommand() async throws {
        let peer = try await ScriptedQMPPeer.answering(path: TempPaths.socket()) { command, _ in
            command == "query-status" ? [.sendRaw(#"{"return": {"#), .close] : []
        }
        defer { Task { await peer.stop() } }
        let client = try await QMPClient.connect(socketPath: peer.path, options: fast)
        let other = Task { try await client.execute("query-name") }
        await #expect(throws: QMPError.self) { try await client.execute("query-status") }
        await #expect(throws: QMPError.self) { try await other.value }
        // After the connection broke, new commands fail at once with the same error.
        let start = ContinuousClock.now
        do {
            _ = try await client.execute("query-name")
            Issue.record("a command succeeded on a closed connection")
        } catch {
            guard case .connectionClosed = error else {
                Issue.record("got \(error)")
                return
            }
        }
        #expect(ContinuousClock.now - start < .milliseconds(500))
    }

    @Test func silencePastTheDeadlineIsATimeout() async throws {
        var options = fast
        options.commandTimeout = .milliseconds(300)
        let start = ContinuousClock.now
        let error = try await error(answering: [], options: options)
        #expect(error == .timedOut(command: "query-status", after: .milliseconds(300)))
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func aLateReplyAfterATimeoutIsDropped() async throws {
        let peer = try await ScriptedQMPPeer.answering(path: TempPaths.socket()) { command, _ in
            command == "query-status" ? [.sleep(.milliseconds(400)), .reply(["status": "running"])] : [.reply(["name": "vm"])]
        }
        defer { Task { await peer.stop() } }
        let client = try await QMPClient.connect(socketPath: peer.path, options: fast)
        await #expect(throws: QMPError.timedOut(command: "query-status", after: .milliseconds(100))) {
            try await client.execute("query-status", timeout: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(500))
        // The late reply arrived and was dropped; the connection still works.
        #expect(client.isActive)
        #expect(try await client.execute("query-name") == ["name": "vm"])
        await client.close()
    }

    @Test func noGreetingTimesOutTheConnect() async throws {
        let peer = try await ScriptedQMPPeer(path: TempPaths.socket(), onConnect: []) { _, _ in [] }
        defer { Task { await peer.stop() } }
        var options = fast
        options.connectTimeout = .milliseconds(300)
        await #expect(throws: QMPError.timedOut(command: "(greeting)", after: .milliseconds(300))) {
            try await QMPClient.connect(socketPath: peer.path, options: options)
        }
    }

    @Test func aPeerThatIsNotQEMUIsRefused() async throws {
        let peer = try await ScriptedQMPPeer(path: TempPaths.socket(), onConnect: [.send(#"{"hello": "world"}"#)]) { _, _ in [] }
        defer { Task { await peer.stop() } }
        await #expect(throws: QMPError.self) {
            try await QMPClient.connect(socketPath: peer.path, options: fast)
        }
        let peer2 = try await ScriptedQMPPeer(path: TempPaths.socket(), onConnect: [.send(#"{"QMP": {"version": "7"}}"#)]) { _, _ in [] }
        defer { Task { await peer2.stop() } }
        do {
            _ = try await QMPClient.connect(socketPath: peer2.path, options: fast)
            Issue.record("connected to a non-QEMU peer")
        } catch {
            guard case .notQMP = error else {
                Issue.record("got \(error)")
                return
            }
        }
    }

    @Test func nothingListeningIsNoListener() async throws {
        let path = TempPaths.socket()
        let peer = try await ScriptedQMPPeer(path: path) { _, _ in [] }
        await peer.stop()
        await #expect(throws: QMPError.noListener(path: path)) {
            try await QMPClient.connect(socketPath: path, options: fast)
        }
    }

    @Test func oobIsRequestedOnlyWhenOffered() async throws {
        let seen = ArgumentsLog()
        for (caps, expectOOB) in [(#"["oob"]"#, true), ("[]", false)] {
            let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": \#(caps)}}"#
            let peer = try await ScriptedQMPPeer(path: TempPaths.socket(), onConnect: [.send(greeting)]) { command, arguments in
                if command == "qmp_capabilities" { seen.record(arguments) }
                return [.reply([:])]
            }
            let client = try await QMPClient.connect(socketPath: peer.path, options: fast)
            await client.close()
            await peer.stop()
            #expect((seen.last?["enable"] == ["oob"]) == expectOOB)
        }
    }

    @Test func eventsArriveOnTheStreamAndEndWithTheConnection() async throws {
        let peer = try await ScriptedQMPPeer.answering(path: TempPaths.socket()) { command, _ in
            command == "query-status"
                ? [.send(#"{"event": "STOP", "data": {}, "timestamp": {"seconds": 10, "microseconds": 5}}"#), .reply(["status": "paused"]), .close]
                : []
        }
        defer { Task { await peer.stop() } }
        let client = try await QMPClient.connect(socketPath: peer.path, options: fast)
        _ = try await client.execute("query-status")
        var names: [String] = []
        for await event in client.events {
            names.append(event.name)
            #expect(event.timestampMicroseconds == 10_000_005)
        }
        #expect(names == ["STOP"])
    }
}

/// The arguments a scripted peer saw, for assertions.
final class ArgumentsLog: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLockShim()
    private var entries: [JSONValue?] = []
    func record(_ v: JSONValue?) { lock.run { entries.append(v) } }
    var last: JSONValue? { lock.run { entries.last ?? nil } }
}
