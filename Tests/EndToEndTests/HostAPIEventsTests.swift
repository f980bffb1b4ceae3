import Foundation
import HummingbirdWSClient
import Logging
import QMP
import Synchronization
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Pushed events on the WebSocket at /rpc, with a real guest paused and resumed through
/// the test's own monitor, read by the WebSocket client of hummingbird-websocket.
@Suite(.serialized) struct HostAPIEventsTests {
    /// What one subscriber saw: its messages with the time each arrived.
    final class Seen: Sendable {
        let messages = Mutex<[(JSONValue, ContinuousClock.Instant)]>([])
        /// Whether the call over the WebSocket was answered.
        let answered = Atomic<Bool>(false)

        func first(after: ContinuousClock.Instant, _ match: (JSONValue) -> Bool) -> (JSONValue, ContinuousClock.Instant)? {
            messages.withLock { $0.first { $0.1 >= after && match($0.0) } }
        }
    }

    final class Flag: Sendable {
        let value = Atomic<Bool>(false)
    }

    static func subscriber(port: Int, kinds: [String], seen: Seen, stop: Flag) async throws {
        try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/rpc", logger: Logger(label: "test.ws")) { inbound, outbound, _ in
            try await outbound.write(.text(JSONText.serialize([
                "jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["kinds": .array(kinds.map { .string($0) })],
            ])))
            try await outbound.write(.text(#"{"jsonrpc": "2.0", "id": 2, "method": "Host.getAllVmRuntimeStats"}"#))
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message, let value = try? JSONParser.parse(Array(text.utf8)) else { continue }
                seen.messages.withLock { $0.append((value, .now)) }
                if value["id"] == .int(2) { seen.answered.store(true, ordering: .relaxed) }
                if stop.value.load(ordering: .relaxed) { break }
            }
            try await outbound.close(.normalClosure, reason: nil)
        }
    }

    static func status(_ value: JSONValue, _ status: String) -> Bool {
        value["method"] == "event" && value["params"]?["kind"] == "status" && value["params"]?["data"]?["status"] == .string(status)
    }

    @Test func twoSubscribersSeeAPauseAtOnceAndTheHashThatChanged() async throws {
        let bed = try TestBed(prefix: "rpcws")
        defer { bed.shutdown() }
        let guest = try bed.launch(GuestSpec(name: "ws-1"))
        try await guest.waitReady()
        let agent = try bed.agent(interval: 1, fullInterval: 1)
        try await agent.waitReady()
        _ = try await HostAPITests.wait(agent, "Host.getAllVmRuntimeStats") { $0[guest.uuid]?["status"] == "Up" }

        let seen = [Seen(), Seen()]
        let stop = Flag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for s in seen {
                group.addTask { try await Self.subscriber(port: agent.port, kinds: ["status", "hash"], seen: s, stop: stop) }
            }
            let deadline = ContinuousClock.now + .seconds(10)
            func ready() -> Bool { seen.allSatisfy { $0.answered.load(ordering: .relaxed) } }
            while !ready() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(ready(), "both subscribers were answered over the WebSocket")
            for s in seen {
                let subscribed = s.messages.withLock { $0.first { $0.0["id"] == .int(1) }?.0 }
                #expect(subscribed?["result"]?["kinds"] == ["hash", "status"])
                let answered = s.messages.withLock { $0.first { $0.0["id"] == .int(2) }?.0 }
                #expect(answered?["result"]?[guest.uuid]?["status"] == "Up")
            }

            let control = try await QMPClient.connect(socketPath: guest.controlSocket)
            let paused = ContinuousClock.now
            _ = try await control.execute("stop")
            // Within one sampling interval (1 s): the event comes from QEMU's STOP, not a pass.
            try await Task.sleep(for: .seconds(1))
            for s in seen {
                let event = try #require(s.first(after: paused) { Self.status($0, "Paused") })
                #expect(event.1 - paused < .seconds(1), "the pause reached a subscriber \(event.1 - paused) later")
                #expect(event.0["params"]?["vmId"]?.stringValue == guest.uuid)
                #expect(event.0["params"]?["name"] == "ws-1")
                #expect(event.0["params"]?["data"]?["pauseCode"] == "EOTHER")
                #expect(event.0["id"] == nil, "a notification has no id")
            }
            // The status hash (pauseCode) changed, and the hash watcher says so within an
            // interval or two (a VM new to its baseline comes with all four hashes changed).
            try await Task.sleep(for: .seconds(2))
            for s in seen {
                let hash = s.first(after: paused) { $0["params"]?["kind"] == "hash" && $0["params"]?["data"]?["changed"]?.arrayValue?.contains("status") == true }
                #expect(hash?.0["params"]?["data"]?["changed"]?.arrayValue?.contains("status") == true,
                        "\(s.messages.withLock { $0.map { JSONText.serialize($0.0).prefix(300) } })")
                let now = try agent.result("Host.getAllVmRuntimeStats")[guest.uuid]?["hashes"]?["status"]
                #expect(hash?.0["params"]?["data"]?["hashes"]?["status"] == now, "the event carries the new hash")
            }
            let resumed = ContinuousClock.now
            _ = try await control.execute("cont")
            await control.close()
            try await Task.sleep(for: .seconds(1))
            for s in seen {
                #expect(s.first(after: resumed) { Self.status($0, "Up") }?.0["params"]?["data"]?["pauseCode"] == "NOERR")
                #expect(s.first(after: paused) { $0["params"]?["kind"] == "io-error" } == nil, "only the kinds subscribed to")
            }
            stop.value.store(true, ordering: .relaxed)
            // A last event lets each client's loop see `stop`.
            let c2 = try await QMPClient.connect(socketPath: guest.controlSocket)
            _ = try await c2.execute("stop")
            _ = try await c2.execute("cont")
            await c2.close()
            try await group.waitForAll()
        }
        #expect(try await agent.stop() == 0)
    }
}
