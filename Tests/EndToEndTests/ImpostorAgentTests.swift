import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Something that is not a vmpulse agent listens on the agent's port: `vmpulse stats` must
/// not print it as stats, must stay bounded in time and memory, and must fall back to
/// asking QEMU directly, with a warning naming what answered.
@Suite(.serialized) struct ImpostorAgentTests {
    let vmpulse = Spawn.builtProduct("vmpulse")

    /// A scripted fake HTTP peer on 127.0.0.1 (bad input a real agent never sends): it
    /// reads the request, then does `behaviour` on each connection, one thread each.
    final class Impostor: @unchecked Sendable {
        enum Behaviour: Sendable {
            case answer(String)
            /// A 200 head, then bytes until the peer goes away.
            case endless(head: String)
            /// Reads the request and never answers.
            case silent
        }
        // @unchecked: `listener` is written once in init; `stopped` and `held` under `lock`.
        let port: Int
        private let listener: Int32
        private let lock = NSLock()
        private var held: [Int32] = []
        private var stopped = false

        init(_ behaviour: Behaviour) throws {
            let (fd, port) = try LoopbackListener.open(backlog: 16)
            self.port = port
            listener = fd
            let listener = fd
            Thread.detachNewThread { [self] in
                while true {
                    let fd = accept(listener, nil, nil)
                    guard fd >= 0 else { return }  // closed by stop()
                    lock.lock()
                    held.append(fd)
                    lock.unlock()
                    Thread.detachNewThread { self.serve(fd, behaviour) }
                }
            }
        }

        private func serve(_ fd: Int32, _ behaviour: Behaviour) {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var request: [UInt8] = []
            while !request.suffix(4).elementsEqual("\r\n\r\n".utf8) {
                let n = recv(fd, &buffer, buffer.count, 0)
                guard n > 0 else { return }
                request += buffer[0..<n]
            }
            switch behaviour {
            case .answer(let text):
                _ = send(fd, text, text.utf8.count, Int32(MSG_NOSIGNAL))
                shutdown(fd, Int32(SHUT_WR))
            case .endless(let head):
                _ = send(fd, head, head.utf8.count, Int32(MSG_NOSIGNAL))
                let chunk = [UInt8](repeating: UInt8(ascii: "["), count: 65_536)
                // Bounded: 4 GiB at most, far past any limit, or until the client goes.
                for _ in 0..<65_536 {
                    guard send(fd, chunk, chunk.count, Int32(MSG_NOSIGNAL)) > 0 else { return }
                }
            case .silent:
                return  // the connection stays open until stop()
            }
        }

        func stop() {
            shutdown(listener, Int32(SHUT_RDWR))
            close(listener)
            lock.lock()
            for fd in held { shutdown(fd, Int32(SHUT_RDWR)) }
            held = []
            lock.unlock()
        }

        static func http(_ status: String, type: String, body: String, extra: String = "") -> String {
            "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\(extra)\r\n\(body)"
        }
    }

    /// Runs `vmpulse stats` with the impostor on the agent's port (from the configuration),
    /// under GNU time for its peak memory.
    func statsAgainst(_ behaviour: Impostor.Behaviour, json: Bool, timeout: Int = 2) async throws
        -> (out: String, err: String, status: Int32, elapsed: Duration, peakRSS: Int) {
        let bed = try TestBed(prefix: "impostor")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "real1")
        spec.paused = true
        _ = try bed.launch(spec)
        let impostor = try Impostor(behaviour)
        defer { impostor.stop() }
        let config = bed.directory + "/vmpulse.yaml"
        try "socket_dir: \(bed.socketDirectory)\nlisten: 127.0.0.1:\(impostor.port)\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (out, err, report) = (bed.directory + "/out", bed.directory + "/err", bed.directory + "/rss")
        let started = ContinuousClock.now
        let status = try Spawn.run("/usr/bin/time", ["-f", "%M", "-o", report, vmpulse, "stats", "--config", config, "--timeout", "\(timeout)"]
                                   + (json ? ["--json"] : []), outputPath: out, errorPath: err)
        let elapsed = ContinuousClock.now - started
        let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let kib = Int(read(report).split(separator: "\n").last ?? "") ?? -1
        return (read(out), read(err), status, elapsed, kib * 1024)
    }

    func expectDirect(_ r: (out: String, err: String, status: Int32, elapsed: Duration, peakRSS: Int), json: Bool, naming: String,
                      within: Duration = .seconds(6)) throws {
        #expect(r.status == 0, "\(r.err)")
        #expect(r.err.contains("is not a vmpulse agent"), "no warning: \(r.err)")
        #expect(r.err.contains(naming), "the warning does not say what answered: \(r.err)")
        #expect(r.elapsed < within, "took \(r.elapsed)")
        #expect(r.peakRSS > 0 && r.peakRSS < 200 << 20, "peak memory \(r.peakRSS >> 20) MiB")
        if json {
            let records = try StatsFormat.parseJSON(Array(r.out.utf8))
            #expect(records.map(\.name) == ["real1"] && records.allSatisfy { $0.source == "direct" }, "\(r.out.prefix(300))")
        } else {
            #expect(r.out.hasPrefix("# source: direct"), "\(r.out.prefix(300))")
            #expect(r.out.contains("Domain: 'real1'\n  state.state=3\n"))
            #expect(!r.out.contains("<html"))
        }
    }

    @Test(arguments: [false, true]) func anHTMLPageIsNotTakenForStats(json: Bool) async throws {
        let page = Impostor.http("200 OK", type: "text/html; charset=utf-8", body: "<html><body>It works!</body></html>\n", extra: "Server: Apache/2.4\r\n")
        let r = try await statsAgainst(.answer(page), json: json)
        try expectDirect(r, json: json, naming: "Content-Type 'text/html; charset=utf-8', Server 'Apache/2.4'")
    }

    @Test func anEndlessBodyIsCutAtTheLimit() async throws {
        // A long timeout, so that it is the size that stops the reading.
        let r = try await statsAgainst(.endless(head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"), json: true, timeout: 20)
        try expectDirect(r, json: true, naming: "longer than 64 MiB", within: .seconds(15))
    }

    @Test func aDeclaredLengthOverTheLimitIsRefusedBeforeReading() async throws {
        let r = try await statsAgainst(.endless(head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10000000000\r\n\r\n"), json: false)
        try expectDirect(r, json: false, naming: "longer than 64 MiB", within: .seconds(4))
    }

    @Test(arguments: [
        ("{\"status\": \"ok\"}", "expected an array of records"),
        ("[1, 2, 3]", "record 0 lacks name, uuid or params"),
        ("[{\"name\": \"x\", \"uuid\": \"u\", \"params\": {\"a\": [1]}}]", "not a stats value"),
        ("[{\"name\": \"x\", \"uuid\": \"u\", \"params\": {}}]", "\"source\": \"agent\""),
        ("[{\"name\": \"x\", ", "not JSON"),
    ])
    func wrongJSONIsNotTakenForStats(body: String, why: String) async throws {
        let r = try await statsAgainst(.answer(Impostor.http("200 OK", type: "application/json", body: body)), json: true)
        try expectDirect(r, json: true, naming: why)
    }

    @Test func wrongTextOrAnErrorOfAnotherShapeIsNotTakenEither() async throws {
        let text = try await statsAgainst(.answer(Impostor.http("200 OK", type: "text/plain", body: "hello\n")), json: false)
        try expectDirect(text, json: false, naming: "not the stats text form")
        let refused = try await statsAgainst(.answer(Impostor.http("404 Not Found", type: "text/html", body: "<h1>Not Found</h1>")), json: false)
        try expectDirect(refused, json: false, naming: "HTTP 404")
        let failing = try await statsAgainst(.answer(Impostor.http("500 Internal Server Error", type: "application/json", body: "{\"error\": \"boom\"}")), json: true)
        try expectDirect(failing, json: true, naming: "HTTP 500")
    }

    /// The checks take the real agent's answers, in both forms, with names that need escaping.
    @Test func aRealAgentIsStillTaken() async throws {
        let bed = try TestBed(prefix: "realagent")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "it's\nodd")
        spec.paused = true
        _ = try bed.launch(spec)
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        try await agent.waitReady()
        var text = try Spawn.capture(vmpulse, ["stats", "--config", agent.configPath])
        for _ in 0..<50 where !text.stdout.contains("state.state=") {
            try await Task.sleep(for: .milliseconds(200))
            text = try Spawn.capture(vmpulse, ["stats", "--config", agent.configPath])
        }
        #expect(text.status == 0 && text.stderr.isEmpty, "\(text.stderr)")
        #expect(text.stdout.hasPrefix("# source: agent at \(agent.address)"), "\(text.stdout.prefix(300))")
        #expect(text.stdout.contains("Domain: 'it\\'s\\nodd'\n"))
        let json = try Spawn.capture(vmpulse, ["stats", "--json", "--config", agent.configPath, "--group", "state,bogus"])
        #expect(json.status == 0)
        #expect(try StatsFormat.parseJSON(Array(json.stdout.utf8)).map(\.source) == ["agent"])
        #expect(json.stderr.contains("left out bogus") && !json.stderr.contains("not a vmpulse agent"), "\(json.stderr)")
        let refused = try Spawn.capture(vmpulse, ["stats", "--config", agent.configPath, "nosuchvm"])
        #expect(refused.status == 1 && refused.stderr.contains("no VM named nosuchvm"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("not a vmpulse agent"))
        #expect(try await agent.stop() == 0)
    }

    @Test func aPeerThatNeverAnswersIsGivenUpAtTheTimeout() async throws {
        let r = try await statsAgainst(.silent, json: false, timeout: 2)
        try expectDirect(r, json: false, naming: "no complete answer within 2.0 s", within: .seconds(5))
        #expect(r.elapsed >= .seconds(2))
    }
}
