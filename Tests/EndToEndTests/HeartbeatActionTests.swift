import Foundation
import Glibc
import Synchronization
import Testing
import VMPulseCore
import VMPulseTestSupport

/// A service link's actions against real agents: a program that hangs is killed at its
/// timeout and the next action still runs; a webhook that fails is tried again; a notice
/// goes to another agent over its heartbeat link and is recorded there, never acted on.
/// The service and the webhook receiver are the test's own sockets (scripted fakes).
@Suite(.serialized) struct HeartbeatActionTests {
    /// A TCP listener on loopback that accepts and closes: a service that is up until `stop`.
    final class Listener: @unchecked Sendable {
        // @unchecked: `answers` and `bodies` are guarded by `lock`.
        let fd: Int32
        let port: Int
        private let lock = NSLock()
        /// HTTP statuses to answer, in turn (the last one repeats); empty: accept and close.
        private var answers: [Int]
        private(set) var bodies: [String] = []

        init(answers: [Int] = []) throws {
            self.answers = answers
            let (fd, port) = try LoopbackListener.open(backlog: 16)
            self.fd = fd
            self.port = port
            let http = !answers.isEmpty
            Thread { [self] in
                while true {
                    let c = accept(fd, nil, nil)
                    guard c >= 0 else { return }
                    if http { serve(c) }
                    close(c)
                }
            }.start()
        }

        private func serve(_ c: Int32) {
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var request: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let text = String(decoding: request, as: UTF8.self)
                if let end = text.range(of: "\r\n\r\n") {
                    let length = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                        .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                    if text[end.upperBound...].utf8.count >= length { break }
                }
                let n = recv(c, &chunk, chunk.count, 0)
                guard n > 0 else { return }
                request += chunk[0..<n]
            }
            let text = String(decoding: request, as: UTF8.self)
            let status: Int = lock.withLock {
                bodies.append(String(text[(text.range(of: "\r\n\r\n")?.upperBound ?? text.endIndex)...]))
                return answers.count > 1 ? answers.removeFirst() : answers[0]
            }
            let reply = "HTTP/1.1 \(status) X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            _ = reply.withCString { send(c, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }

        var received: [String] { lock.withLock { bodies } }
        func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
    }

    @Test func aHangingActionIsKilledAWebhookIsRetriedAndANoticeReachesThePeer() async throws {
        let bedA = try TestBed(prefix: "hb-act-a"), bedB = try TestBed(prefix: "hb-act-b")
        defer {
            bedA.shutdown()
            bedB.shutdown()
        }
        let key = try HeartbeatFixture.keyFile(in: bedA.directory)
        try FileManager.default.copyItem(atPath: key, toPath: bedB.directory + "/heartbeat.key")
        let service = try Listener()
        let hook = try Listener(answers: [500, 200])
        let runs = bedA.directory + "/runs.txt"
        let recorder = try HeartbeatFixture.recorder(in: bedA.directory, file: runs)
        let hang = bedA.directory + "/hang.sh"
        try "#!/bin/sh\nsleep 60 &\nsleep 60\n".write(toFile: hang, atomically: true, encoding: .utf8)
        chmod(hang, 0o755)
        let peerPort = Int.random(in: 20_000...60_000)
        let b = try AgentProcess(socketDirectory: bedB.socketDirectory, dataDirectory: bedB.directory + "/data", directory: bedB.directory, extraYAML: """
            heartbeat:
              name: host-b
              key_file: \(bedB.directory)/heartbeat.key
              links:
                - {name: from-a, peer: host-a, listen: "127.0.0.1:\(peerPort)", interval: 0.5, timeout: 2.5}
            """)
        try await HeartbeatFixture.waitAgent(b)
        let a = try AgentProcess(socketDirectory: bedA.socketDirectory, dataDirectory: bedA.directory + "/data", directory: bedA.directory, extraYAML: """
            heartbeat:
              name: host-a
              key_file: \(key)
              links:
                - {name: to-b, peer: host-b, connect: "127.0.0.1:\(peerPort)", interval: 0.5, timeout: 2.5}
                - name: svc
                  service: "127.0.0.1:\(service.port)"
                  interval: 0.5
                  timeout: 2
                  recovery_pulses: 2
                  on_dead:
                    - {program: \(hang), timeout: 1}
                    - {program: \(recorder), args: [dead]}
                    - {webhook: "http://127.0.0.1:\(hook.port)/hook", retries: 2, timeout: 2}
                    - {notify: to-b}
            """)
        try await HeartbeatFixture.waitAgent(a)
        try await HeartbeatFixture.waitLink(port: a.port, "svc", agentLog: a.logText) { ($0["pulses"]?.uint64Value ?? 0) >= 3 }
        try await HeartbeatFixture.waitLink(port: a.port, "to-b", agentLog: a.logText) { ($0["pulses"]?.uint64Value ?? 0) >= 3 }

        // Subscribers of both agents' event streams.
        let seenA = HostAPIEventsTests.Seen(), seenB = HostAPIEventsTests.Seen(), done = HostAPIEventsTests.Flag()
        let subscribers = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await HostAPIEventsTests.subscriber(port: a.port, kinds: ["heartbeat", "heartbeat-action"], seen: seenA, stop: done) }
                group.addTask { try await HostAPIEventsTests.subscriber(port: b.port, kinds: ["heartbeat-notice"], seen: seenB, stop: done) }
                try await group.waitForAll()
            }
        }
        defer { subscribers.cancel() }
        let subscribed = ContinuousClock.now + .seconds(10)
        while !(seenA.answered.load(ordering: .relaxed) && seenB.answered.load(ordering: .relaxed)) && ContinuousClock.now < subscribed {
            try await Task.sleep(for: .milliseconds(50))
        }

        service.stop()
        let stopped = ContinuousClock.now
        let dead = try await HeartbeatFixture.waitLink(port: a.port, "svc", timeout: .seconds(20), agentLog: a.logText) {
            ($0["recent_actions"]?.arrayValue?.count ?? 0) >= 4
        }.link
        let actions = (dead["recent_actions"]?.arrayValue ?? []).reversed().map { $0 }  // oldest first
        #expect(dead["state"] == "dead")
        #expect(actions.map { $0["action"]?.stringValue ?? "" } == ["program \(hang)", "program \(recorder)", "webhook http://127.0.0.1:\(hook.port)/hook", "notice over link to-b"],
                "the actions in their order: \(actions)")
        #expect(actions[0]["succeeded"] == false && actions[0]["detail"]?.stringValue?.contains("did not finish within 1.0 s; killed") == true, "\(actions[0])")
        #expect(actions[1]["succeeded"] == true && actions[2]["succeeded"] == true && actions[3]["succeeded"] == true, "\(actions)")
        #expect(actions[2]["detail"]?.stringValue?.contains("attempt 2") == true, "the webhook's first answer was 500: \(actions[2])")
        #expect(HeartbeatFixture.seconds(ContinuousClock.now - stopped) < 15, "the hanging program held the others for its timeout only")
        #expect(a.logText.contains("heartbeat link svc: program \(hang) for suspect->dead failed: did not finish within 1.0 s; killed"))
        #expect(a.logText.contains("error vmpulse.heartbeat") && a.logText.contains("is dead, was suspect"), "the administrator's error line")
        // The hanging program's whole group is gone (its own sleep and the one it started).
        let left = try Spawn.capture("/usr/bin/pgrep", ["-f", "sleep 60"])
        #expect(left.stdout.isEmpty, "killed with its children: \(left.stdout)")
        let posted = hook.received
        #expect(posted.count == 2, "one failed POST, one retry: \(posted)")
        let body = try JSONParser.parse(Array((posted.last ?? "").utf8))
        #expect(body["link"] == "svc" && body["to"] == "dead" && body["from"] == "suspect" && body["host"] == "host-a" && body["kind"] == "service", "\(body)")

        // The notice reached host-b over its link, recorded there; host-b ran nothing for it.
        let fromA = try await HeartbeatFixture.waitLink(port: b.port, "from-a", agentLog: b.logText) { !($0["notices"]?.arrayValue?.isEmpty ?? true) }.link
        let notice = fromA["notices"]?.arrayValue?.first
        #expect(notice?["from"] == "host-a" && notice?["link"] == "svc" && notice?["state"] == "dead", "\(fromA)")
        #expect(fromA["actions_run"]?.uint64Value == 0 && fromA["state"] == "alive")
        #expect(b.logText.contains("host-a says its link svc is dead"))

        // The event streams said it all: the link's changes and each action on A, the notice on B.
        func events(_ seen: HostAPIEventsTests.Seen, _ kind: String) -> [JSONValue] {
            seen.messages.withLock { $0.map(\.0) }.filter { $0["method"] == "event" && $0["params"]?["kind"]?.stringValue == kind }.compactMap { $0["params"] }
        }
        let changes = events(seenA, "heartbeat").filter { $0["name"] == "svc" }.map { $0["data"]?["to"]?.stringValue ?? "" }
        #expect(changes == ["suspect", "dead"], "\(changes)")
        let ran = events(seenA, "heartbeat-action").map { $0["data"]?["succeeded"]?.boolValue ?? true }
        #expect(ran == [false, true, true, true], "\(ran)")
        let told = events(seenB, "heartbeat-notice").first
        #expect(told?["name"] == "from-a" && told?["data"]?["link"] == "svc" && told?["data"]?["state"] == "dead" && told?["vmId"] == "", "\(String(describing: told))")
        try await a.stop()
        try await b.stop()
    }

    @Test func theAgentRefusesToStartWithAMissingProgramOrKey() async throws {
        let bed = try TestBed(prefix: "hb-start")
        defer { bed.shutdown() }
        func start(_ yaml: String) throws -> Spawn.Output {
            let path = bed.directory + "/bad.yaml"
            try "socket_dir: \(bed.socketDirectory)\ndata_dir: \(bed.directory)/data\nlisten: 127.0.0.1:\(Int.random(in: 20_000...60_000))\n\(yaml)"
                .write(toFile: path, atomically: true, encoding: .utf8)
            return try Spawn.capture(Spawn.builtProduct("vmpulse"), ["agent", "--config", path])
        }
        let missing = try start("heartbeat:\n  links: [{name: s, service: '127.0.0.1:1', on_dead: [{program: \(bed.directory)/nope}]}]\n")
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("'heartbeat.links[0].on_dead[0].program': \(bed.directory)/nope: No such file or directory"), "\(missing.stderr)")
        let short = bed.directory + "/short.key"
        FileManager.default.createFile(atPath: short, contents: Data("too short\n".utf8), attributes: [.posixPermissions: 0o600])
        let badKey = try start("heartbeat:\n  key_file: \(short)\n  links: [{name: p, peer: x, connect: '127.0.0.1:1'}]\n")
        #expect(badKey.status == 1)
        #expect(badKey.stderr.contains("'heartbeat.key_file': \(short) holds 9 bytes; a key needs at least 32"), "\(badKey.stderr)")
        let noKey = try start("heartbeat:\n  key_file: \(bed.directory)/absent.key\n  links: [{name: p, peer: x, connect: '127.0.0.1:1'}]\n")
        #expect(noKey.status == 1 && noKey.stderr.contains("absent.key: No such file or directory"), "\(noKey.stderr)")
    }
}
