import Glibc
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The QMP client against a real QEMU (a paused test guest: no kernel needed).
@Suite(.serialized) struct QMPClientRealQEMUTests {
    func withPausedGuest(_ body: (Guest) async throws -> Void) async throws {
        let bed = try TestBed(prefix: "qmp")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "qmp-real")
        spec.paused = true
        let guest = try bed.launch(spec)
        try await body(guest)
    }

    @Test func negotiatesAndKnowsQEMUsPID() async throws {
        try await withPausedGuest { guest in
            let client = try await QMPClient.connect(socketPath: guest.socketPath)
            #expect(client.greeting.major == 7)
            #expect(client.greeting.capabilities.contains("oob"))
            #expect(client.peerPID == guest.pid)
            #expect(try await client.execute("query-name") == ["name": .string(guest.name)])
            await client.close()
        }
    }

    @Test func manyCommandsInFlightAreCorrelatedByID() async throws {
        try await withPausedGuest { guest in
            let client = try await QMPClient.connect(socketPath: guest.socketPath)
            try await withThrowingTaskGroup(of: (Int, JSONValue).self) { group in
                for i in 0..<200 {
                    group.addTask { (i, try await client.execute(i % 2 == 0 ? "query-name" : "query-uuid")) }
                }
                var count = 0
                for try await (i, reply) in group {
                    if i % 2 == 0 {
                        #expect(reply["name"] == .string(guest.name))
                    } else {
                        #expect(reply["UUID"] == .string(guest.uuid))
                    }
                    count += 1
                }
                #expect(count == 200)
            }
            await client.close()
        }
    }

    @Test func errorRepliesAreTyped() async throws {
        try await withPausedGuest { guest in
            let client = try await QMPClient.connect(socketPath: guest.socketPath)
            do throws(QMPError) {
                _ = try await client.execute("no-such-command")
                Issue.record("QEMU accepted an unknown command")
            } catch {
                guard case .commandFailed(let command, let errorClass, _) = error else {
                    Issue.record("got \(error)")
                    return
                }
                #expect(command == "no-such-command")
                #expect(errorClass == "CommandNotFound")
            }
            #expect(try await client.execute("query-status")["status"] == "prelaunch")
            await client.close()
        }
    }

    @Test func deliversEvents() async throws {
        try await withPausedGuest { guest in
            let client = try await QMPClient.connect(socketPath: guest.socketPath)
            _ = try await client.execute("cont")
            _ = try await client.execute("stop")
            var names: [String] = []
            for await event in client.events {
                names.append(event.name)
                if names.count == 2 { break }
            }
            #expect(names == ["RESUME", "STOP"])
            await client.close()
        }
    }

    @Test func aStoppedQEMUTimesOutAndTheConnectionRecovers() async throws {
        try await withPausedGuest { guest in
            let client = try await QMPClient.connect(socketPath: guest.socketPath)
            guest.signal(SIGSTOP)
            let start = ContinuousClock.now
            await #expect(throws: QMPError.timedOut(command: "query-status", after: .milliseconds(500))) {
                try await client.execute("query-status", timeout: .milliseconds(500))
            }
            #expect(ContinuousClock.now - start < .seconds(2))
            guest.signal(SIGCONT)
            // The late reply to the timed-out command is dropped; the next command works.
            #expect(try await client.execute("query-name")["name"] == .string(guest.name))
            await client.close()
        }
    }
}
