import Foundation
import Glibc
import VMPulseCore

/// A real `vmpulse agent` process for end-to-end tests, on a port of its own.
public final class AgentProcess: @unchecked Sendable {
    // @unchecked: `pid` is written by start/kill from the test's one task.
    public let binary: String
    public let configPath: String
    public let dataDirectory: String
    public let port: Int
    public let log: String
    public private(set) var pid: pid_t = 0
    /// What the agent is started under (`ip netns exec NS`); empty: nothing.
    public var launcher: [String] = []

    /// An agent on the QMP backend, for the monitor sockets in `socketDirectory`.
    public convenience init(socketDirectory: String, dataDirectory: String, directory: String, interval: Double = 0.5,
                            flushInterval: Double = 1, fullInterval: Double = 5, extraYAML: String = "", listenHost: String = "127.0.0.1",
                            launcher: [String] = []) throws {
        try self.init(backendYAML: "socket_dir: \(socketDirectory)", dataDirectory: dataDirectory, directory: directory,
                      interval: interval, flushInterval: flushInterval, fullInterval: fullInterval, extraYAML: extraYAML, listenHost: listenHost,
                      launcher: launcher)
    }

    /// Writes a configuration file (`backendYAML` says which backend, `extraYAML` is
    /// appended) and starts the agent.
    public init(backendYAML: String, dataDirectory: String, directory: String, interval: Double = 0.5,
                flushInterval: Double = 1, fullInterval: Double = 5, extraYAML: String = "", listenHost: String = "127.0.0.1",
                launcher: [String] = []) throws {
        binary = Spawn.builtProduct("vmpulse")
        self.launcher = launcher
        self.dataDirectory = dataDirectory
        port = Int.random(in: 20_000...60_000)
        configPath = directory + "/agent.yaml"
        log = directory + "/agent.log"
        let yaml = """
            \(backendYAML)
            data_dir: \(dataDirectory)
            listen: \(listenHost):\(port)
            sampler:
              interval: \(interval)
              full_interval: \(fullInterval)
            ledger:
              flush_interval: \(flushInterval)
            \(extraYAML)
            """
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        try start()
    }

    public var address: String { "127.0.0.1:\(port)" }

    public func start() throws {
        // `ip netns exec` execs the agent in place, so `pid` is the agent's own.
        pid = try Spawn.start(launcher.first ?? binary, Array(launcher.dropFirst()) + (launcher.isEmpty ? [] : [binary]) + ["agent", "--config", configPath],
                              outputPath: log)
    }

    /// Waits until the agent answers `/v1/health` (with any status).
    public func waitReady(timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let code = Spawn.exited(pid) { throw TestBedError("the agent exited (\(code)) at start: \(logText.suffix(2000))") }
            if (try? HTTPGet.fetch(port: port, path: "/v1/health")) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestBedError("the agent did not answer within \(timeout): \(logText.suffix(2000))")
    }

    public var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// One JSON-RPC call over `POST /rpc`; returns the whole reply object.
    public func rpc(_ method: String, _ params: JSONValue? = nil, token: String? = nil) throws -> JSONValue {
        var request: [String: JSONValue] = ["jsonrpc": "2.0", "id": 1, "method": .string(method)]
        if let params { request["params"] = params }
        let r = try post(Array(JSONText.serialize(.object(request)).utf8), token: token)
        guard r.status == 200 else { throw TestBedError("POST /rpc \(method): HTTP \(r.status): \(r.body.prefix(500))") }
        return try JSONParser.parse(Array(r.body.utf8))
    }

    /// The result of a call that must succeed.
    public func result(_ method: String, _ params: JSONValue? = nil, token: String? = nil) throws -> JSONValue {
        let reply = try rpc(method, params, token: token)
        guard let result = reply["result"] else { throw TestBedError("\(method) failed: \(JSONText.serialize(reply))") }
        return result
    }

    /// `POST /rpc` with this body.
    public func post(_ body: [UInt8], token: String? = nil) throws -> HTTPGet.Response {
        try HTTPGet.fetch(port: port, path: "/rpc", method: "POST", body: body, headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
    }

    public func health() throws -> (status: Int, body: JSONValue) {
        let r = try HTTPGet.fetch(port: port, path: "/v1/health")
        return (r.status, try JSONParser.parse(Array(r.body.utf8)))
    }

    /// SIGTERM and wait for the graceful exit; returns its status.
    @discardableResult
    public func stop(timeout: Duration = .seconds(20)) async throws -> Int32 {
        guard pid > 0 else { return 0 }
        let code = try await Spawn.terminate(pid, timeout: timeout)
        pid = 0
        guard let code else { throw TestBedError("the agent did not stop within \(timeout) after SIGTERM") }
        return code
    }

    /// SIGKILL: no chance to flush anything.
    public func killHard() async throws {
        guard pid > 0 else { return }
        try await Spawn.killHard(pid)
        pid = 0
    }

    deinit {
        if pid > 0 {
            kill(pid, SIGKILL)
            _ = Spawn.exited(pid)
        }
    }
}

/// A blocking HTTP/1.1 GET on loopback for tests (Connection: close, read to the end).
public enum HTTPGet {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
    }

    public static func fetch(port: Int, path: String, method: String = "GET", body: [UInt8]? = nil,
                             headers extra: [String: String] = [:]) throws -> Response {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestBedError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw TestBedError("connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))") }
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in extra { request += "\(name): \(value)\r\n" }
        if let body { request += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        let bytes = Array((request + "\r\n").utf8) + (body ?? [])
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the agent closed early (a body over its limit): read what it said
            sent += n
        }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { break }
            data += chunk[0..<n]
        }
        // The head's end found in the bytes: Foundation's `range(of:)` on a 2 MiB answer took
        // longer than the agent took to write it (`make bench-metrics`).
        let marker: [UInt8] = [13, 10, 13, 10]
        guard let end = (0..<max(0, data.count - 3)).first(where: { data[$0] == 13 && data[$0..<$0 + 4].elementsEqual(marker) }) else {
            throw TestBedError("not an HTTP answer: \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
        let head = String(decoding: data[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = head.first, statusLine.hasPrefix("HTTP/1.1 "), let status = Int(statusLine.dropFirst(9).prefix(3)) else {
            throw TestBedError("bad status line: \(head.first ?? "")")
        }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        var body = String(decoding: data[(end + 4)...], as: UTF8.self)
        if headers["transfer-encoding"] == "chunked" { body = dechunk(body) }
        return Response(status: status, headers: headers, body: body)
    }

    static func dechunk(_ s: String) -> String {
        var out = ""
        var rest = Substring(s)
        while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound], radix: 16), size > 0 {
            let start = lineEnd.upperBound
            let bytes = Array(rest[start...].utf8)
            out += String(decoding: bytes.prefix(size), as: UTF8.self)
            rest = Substring(String(decoding: bytes.dropFirst(size + 2), as: UTF8.self))
        }
        return out
    }
}
