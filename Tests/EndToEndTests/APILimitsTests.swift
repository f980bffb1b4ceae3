import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The agent's HTTP listener holds bounded resources: connections beyond `api.max_connections`
/// make room (the longest-idle one is closed), idle connections are closed after
/// `api.idle_timeout`, and so are requests sent a byte at a time. Real agent, real sockets.
@Suite(.serialized) struct APILimitsTests {
    /// An agent with no VMs and the given `api:` limits.
    func agent(_ bed: TestBed, idleTimeout: Double, maxConnections: Int) async throws -> AgentProcess {
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     extraYAML: "api:\n  idle_timeout: \(idleTimeout)\n  max_connections: \(maxConnections)\n")
        try await agent.waitReady()
        return agent
    }

    /// A TCP connection to the agent that sends nothing unless told.
    func connect(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestBedError("socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(fd); throw TestBedError("connect: \(String(cString: strerror(errno)))") }
        return fd
    }

    /// Whether the agent closed this connection (a read sees the end, or a reset), waiting
    /// up to `within`; what the agent sent meanwhile (an answer) is read and dropped.
    func closedByAgent(_ fd: Int32, within: Duration) -> Bool {
        let deadline = ContinuousClock.now + within
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline - ContinuousClock.now
            let ms = max(0, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, ms) == 1 else { return false }
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return true }
            if ContinuousClock.now >= deadline { return false }
        }
    }

    /// The agent's open descriptors.
    func descriptors(_ agent: AgentProcess) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(agent.pid)/fd").count) ?? -1
    }

    @Test func moreIdleConnectionsThanTheLimitLeaveHealthAnswering() async throws {
        let bed = try TestBed(prefix: "apilimit")
        defer { bed.shutdown() }
        let agent = try await agent(bed, idleTimeout: 60, maxConnections: 8)
        let base = descriptors(agent)
        var idle: [Int32] = []
        defer { for fd in idle { close(fd) } }
        for _ in 0..<100 { idle.append(try connect(agent.port)) }
        // Each answer comes at once: the idle connections make room, nobody waits for
        // the 60 s idle timeout.
        for _ in 0..<5 {
            let started = ContinuousClock.now
            let health = try agent.health()
            #expect(health.status == 200)
            #expect(ContinuousClock.now - started < .seconds(2))
        }
        // The agent holds at most the limit, not a descriptor per connection.
        try await Task.sleep(for: .milliseconds(300))
        let held = descriptors(agent)
        #expect(held <= base + 8 + 2, "the agent holds \(held) descriptors, \(base) before 100 connections with a limit of 8")
        // The oldest idle ones were closed to make room; the newest are still open.
        #expect(idle.prefix(80).allSatisfy { closedByAgent($0, within: .milliseconds(10)) })
        #expect(!closedByAgent(idle[99], within: .milliseconds(10)))
        #expect(try await agent.stop() == 0)
    }

    @Test func idleConnectionsAndSlowRequestsAreClosedAfterTheIdleTimeout() async throws {
        let bed = try TestBed(prefix: "apiidle")
        defer { bed.shutdown() }
        let agent = try await agent(bed, idleTimeout: 1.5, maxConnections: 64)
        let base = descriptors(agent)
        // Idle from the start.
        let silent = try connect(agent.port)
        defer { close(silent) }
        // Idle after a complete request (keep-alive): answered, then closed when idle.
        let kept = try connect(agent.port)
        defer { close(kept) }
        // /v1/thin, not /v1/health: health is 503 while the ledger is still opening, which
        // on a loaded machine can outlast the agent's first answer (seen in CI).
        let request = "GET /v1/thin HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(send(kept, request, request.utf8.count, Int32(MSG_NOSIGNAL)) == request.utf8.count)
        var answer = [UInt8](repeating: 0, count: 4096)
        #expect(recv(kept, &answer, answer.count, 0) > 0)
        #expect(String(decoding: answer.prefix(12), as: UTF8.self) == "HTTP/1.1 200")
        #expect(!closedByAgent(silent, within: .milliseconds(500)), "closed before its idle timeout")
        #expect(closedByAgent(silent, within: .seconds(3)), "an idle connection was not closed")
        #expect(closedByAgent(kept, within: .seconds(3)), "a kept-alive idle connection was not closed")

        // Slowloris: a request header sent a byte a second (it would take 40 s).
        let slow = try connect(agent.port)
        defer { close(slow) }
        let started = ContinuousClock.now
        var closed = false
        for byte in Array(request.utf8) + Array(repeating: UInt8(ascii: "x"), count: 30) {
            var b = byte
            if send(slow, &b, 1, Int32(MSG_NOSIGNAL)) != 1 || closedByAgent(slow, within: .seconds(1)) {
                closed = true
                break
            }
        }
        #expect(closed, "a header sent a byte a second kept its connection")
        #expect(ContinuousClock.now - started < .seconds(5))

        // A complete header, then a body a byte a second: closed at the same bound.
        let trickle = try connect(agent.port)
        defer { close(trickle) }
        let head = "GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        #expect(send(trickle, head, head.utf8.count, Int32(MSG_NOSIGNAL)) == head.utf8.count)
        let trickleStarted = ContinuousClock.now
        var trickleClosed = false
        for _ in 0..<30 {
            var b = UInt8(ascii: "x")
            if send(trickle, &b, 1, Int32(MSG_NOSIGNAL)) != 1 || closedByAgent(trickle, within: .seconds(1)) {
                trickleClosed = true
                break
            }
        }
        #expect(trickleClosed, "a body sent a byte a second kept its connection")
        #expect(ContinuousClock.now - trickleStarted < .seconds(5))

        try await Task.sleep(for: .milliseconds(300))
        #expect(descriptors(agent) <= base + 1, "descriptors left: \(descriptors(agent)), \(base) at the start")
        #expect(try agent.health().status == 200)
        #expect(try await agent.stop() == 0)
    }

    /// Clients that pipeline requests and never read the answers keep a request in flight
    /// for good (the answers fill the socket): when every place is held so, a new connection
    /// (a health probe) closes the longest-waiting one instead of being refused.
    @Test func clientsThatNeverReadTheirAnswersCannotLockHealthOut() async throws {
        let bed = try TestBed(prefix: "apinoread")
        defer { bed.shutdown() }
        let agent = try await agent(bed, idleTimeout: 600, maxConnections: 4)
        var hogs: [Int32] = []
        defer { for fd in hogs { close(fd) } }
        let requests = String(repeating: "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", count: 20_000)
        for _ in 0..<4 {
            let fd = try connect(agent.port)
            var small: Int32 = 4096  // a small receive buffer: the answers back up at once
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            var flags = fcntl(fd, F_GETFL)
            flags |= O_NONBLOCK
            _ = fcntl(fd, F_SETFL, flags)
            _ = requests.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            hogs.append(fd)
        }
        try await Task.sleep(for: .seconds(2))
        let started = ContinuousClock.now
        let health = try HTTPGet.fetch(port: agent.port, path: "/v1/health")
        #expect(health.status == 200)
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try await agent.stop() == 0)
    }

    @Test func badLimitsAreRefusedAtStart() async throws {
        let bed = try TestBed(prefix: "apibad")
        defer { bed.shutdown() }
        let config = bed.directory + "/bad.yaml"
        try "api:\n  max_connections: 0\n".write(toFile: config, atomically: true, encoding: .utf8)
        let out = try Spawn.capture(Spawn.builtProduct("vmpulse"), ["agent", "--config", config])
        #expect(out.status == 1)
        #expect(out.stderr.contains("'api.max_connections': must be between 1 and 65536, got 0"), "\(out.stderr)")
    }
}
