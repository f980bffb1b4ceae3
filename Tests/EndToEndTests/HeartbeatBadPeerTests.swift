import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Hostile peers against a real agent's listening link: replays of a real agent's captured
/// pulses, forged and garbage frames, a peer that connects and says nothing, one that
/// floods, and one connection too many. The hostile peers are the test's own sockets
/// (scripted fake peers); the captured pulses come from a second real agent through a tap.
@Suite(.serialized) struct HeartbeatBadPeerTests {
    /// Takes a real agent's connections, records the frames it sends and passes them on to
    /// `target`, and passes the answers back.
    final class PulseTap: @unchecked Sendable {
        // @unchecked: `frames` is guarded by `lock`; the sockets belong to the tap's thread.
        let port: Int
        private let listener: Int32
        private let lock = NSLock()
        private var recorded: [[UInt8]] = []

        init(target: Int) throws {
            let (fd, port) = try LoopbackListener.open(backlog: 4)
            listener = fd
            self.port = port
            Thread { [self] in
                while true {
                    let client = accept(fd, nil, nil)
                    guard client >= 0 else { return }
                    guard let out = try? RawConnection(port: target) else { close(client); continue }
                    let outFD = out.fd
                    Thread {
                        var buffer = [UInt8](repeating: 0, count: 4096)  // the agent's answers, passed back
                        while true {
                            let n = recv(outFD, &buffer, buffer.count, 0)
                            if n < 0, errno == EAGAIN || errno == EINTR { continue }
                            if n <= 0 || Glibc.send(client, buffer, n, Int32(MSG_NOSIGNAL)) != n { break }
                        }
                        shutdown(client, Int32(SHUT_RDWR))
                    }.start()
                    var frame = [UInt8](repeating: 0, count: 128)
                    reading: while true {
                        var got = 0
                        while got < 128 {
                            let n = frame[got...].withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                            if n <= 0 { break reading }
                            got += n
                        }
                        lock.withLock { recorded.append(frame) }
                        _ = out.send(frame)
                    }
                    shutdown(out.fd, Int32(SHUT_RDWR))
                    close(client)
                }
            }.start()
        }

        var frames: [[UInt8]] { lock.withLock { recorded } }
        deinit { close(listener) }
    }

    @Test func lyingSilentAndFloodingPeersAreRefusedCountedAndNeverKeepALinkAlive() async throws {
        let bedA = try TestBed(prefix: "hb-bad-a"), bedB = try TestBed(prefix: "hb-bad-b")
        defer {
            bedA.shutdown()
            bedB.shutdown()
        }
        let key = try HeartbeatFixture.keyFile(in: bedA.directory)
        try FileManager.default.copyItem(atPath: key, toPath: bedB.directory + "/heartbeat.key")
        let port = Int.random(in: 20_000...60_000)
        let a = try AgentProcess(socketDirectory: bedA.socketDirectory, dataDirectory: bedA.directory + "/data", directory: bedA.directory, extraYAML: """
            heartbeat:
              name: host-a
              key_file: \(key)
              links:
                - {name: from-b, peer: host-b, listen: "127.0.0.1:\(port)", interval: 0.5, timeout: 2.5}
            """)
        try await HeartbeatFixture.waitAgent(a)
        let tap = try PulseTap(target: port)
        let b = try AgentProcess(socketDirectory: bedB.socketDirectory, dataDirectory: bedB.directory + "/data", directory: bedB.directory, extraYAML: """
            heartbeat:
              name: host-b
              key_file: \(bedB.directory)/heartbeat.key
              links:
                - {name: to-a, peer: host-a, connect: "127.0.0.1:\(tap.port)", interval: 0.5, timeout: 2.5}
            """)
        try await HeartbeatFixture.waitAgent(b)
        try await HeartbeatFixture.waitLink(port: a.port, "from-b", agentLog: a.logText) { ($0["pulses"]?.uint64Value ?? 0) >= 4 }
        let captured = tap.frames
        #expect(captured.count >= 4)

        // Replays of real, correctly signed pulses: each refused and counted; the connection stays.
        let liar = try RawConnection(port: port)
        for frame in captured { #expect(liar.send(frame)) }
        var link = try await HeartbeatFixture.waitLink(port: a.port, "from-b") { ($0["replayed"]?.uint64Value ?? 0) >= UInt64(captured.count) }.link
        #expect(link["replayed"]?.uint64Value == UInt64(captured.count) && link["forged"]?.uint64Value == 0, "\(link)")
        #expect(link["last_problem"]?.stringValue?.contains("replayed") == true, "\(link)")
        #expect(!liar.closedByPeer(within: .milliseconds(300)), "a replay is counted, not a reason to hang up")

        // A forged frame (one byte of a real one changed) and garbage: refused, and the connection is cut.
        var forged = captured[captured.count - 1]
        forged[60] ^= 0x40
        #expect(liar.send(forged))
        #expect(liar.closedByPeer(within: .seconds(2)), "a frame that does not check out ends the connection")
        let garbage = try RawConnection(port: port)
        garbage.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8) + [UInt8](repeating: 0x41, count: 128))
        #expect(garbage.closedByPeer(within: .seconds(2)))
        link = try await HeartbeatFixture.waitLink(port: a.port, "from-b") { ($0["forged"]?.uint64Value ?? 0) >= 1 }.link
        #expect(link["rejected"]?.uint64Value == UInt64(captured.count) + 2, "every refused frame is counted: \(link)")
        #expect(link["state"] == "alive", "the real peer still pulses: \(link)")

        // A peer that connects and says nothing is cut off at the link's timeout.
        let silent = try RawConnection(port: port)
        let opened = ContinuousClock.now
        #expect(silent.closedByPeer(within: .seconds(5)))
        #expect(HeartbeatFixture.seconds(ContinuousClock.now - opened) >= 2, "not before the timeout (2.5 s)")

        // One connection too many is refused at once.
        try await HeartbeatFixture.waitLink(port: a.port, "from-b") { $0["connections"]?.int64Value == 1 }  // the tap's alone
        do {
            // Four at once, with the tap's five: exactly one is refused. Which one is not fixed:
            // each connection is set up on its own event loop, so they reach the limit's
            // count in any order.
            let four = try (0..<4).map { _ in try RawConnection(port: port) }
            try await Task.sleep(for: .milliseconds(500))
            let closed = four.map { $0.closedByPeer(within: .milliseconds(200)) }
            #expect(closed.filter { $0 }.count == 1, "one of the five is closed at once, the others stay: \(closed) \(a.logText.suffix(600))")
            #expect(a.logText.contains("refusing a connection: 4 are open on this link"))
        }
        try await Task.sleep(for: .milliseconds(300))  // the three are closed: their places are free again

        // A flood of replays is cut off within its first second, and logged once, not per frame.
        let flood = try RawConnection(port: port)
        var burst: [UInt8] = []
        for _ in 0..<100 { for frame in captured { burst += frame } }
        _ = flood.send(burst)
        #expect(flood.closedByPeer(within: .seconds(2)), "a flood ends its connection")
        try await Task.sleep(for: .milliseconds(500))
        let floodLines = a.logText.split(separator: "\n").filter { $0.contains("a flood") }
        #expect(floodLines.count == 1, "\(floodLines)")
        let replayLines = a.logText.split(separator: "\n").filter { $0.contains("refused a frame") }
        #expect(replayLines.count <= 4, "hundreds of refused frames, a few log lines: \(replayLines.count)")

        // The real peer stops while a liar keeps replaying its pulses: the link still dies.
        try await b.stop()
        let stopped = ContinuousClock.now
        let replayer = Task.detached {
            while !Task.isCancelled {
                if let c = try? RawConnection(port: port) {
                    for frame in captured { _ = c.send(frame) }
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        defer { replayer.cancel() }
        let (dead, seen) = try await HeartbeatFixture.waitLink(port: a.port, "from-b", timeout: .seconds(10), agentLog: a.logText) { $0["state"] == "dead" }
        let after = HeartbeatFixture.seconds(seen - stopped) - (dead["state_seconds"]?.doubleValue ?? 0)
        #expect(after <= 2.5 + 0.5 + 0.3, "dead \(after) s after the peer stopped, replays notwithstanding")
        replayer.cancel()
        try await a.stop()
    }
}
