import Foundation
import HummingbirdWSClient
import Logging
import Synchronization
import VMPulseCore
import VMPulseTestSupport

/// A real headless Chromium (Debian's `chromium`, installed by `make setup`) driven over the
/// Chrome DevTools Protocol: it loads a page, and the test evaluates scripts in that page
/// and takes screenshots through the page's DevTools WebSocket.
final class HeadlessChromium: @unchecked Sendable {
    // @unchecked: `pid` and `port` are set once, in init.
    static let binary = "/usr/bin/chromium"
    let directory: String
    private let pid: pid_t
    private(set) var port = 0

    init(url: String, directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory + "/profile", withIntermediateDirectories: true)
        pid = try Spawn.start(Self.binary, [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--user-data-dir=\(directory)/profile",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
            "--window-size=1400,1000", url,
        ], outputPath: directory + "/chromium.log")
    }

    func stop() {
        kill(pid, SIGKILL)
        _ = waitpid(pid, nil, 0)
    }

    /// The DevTools port, from the line Chromium prints when it listens.
    func waitListening(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let log = (try? String(contentsOfFile: directory + "/chromium.log", encoding: .utf8)) ?? ""
            if let range = log.range(of: "DevTools listening on ws://127.0.0.1:") {
                let digits = log[range.upperBound...].prefix { $0.isNumber }
                if let p = Int(digits) { port = p; return }
            }
            if let code = Spawn.exited(pid) { throw TestBedError("chromium exited (\(code)): \(log.suffix(2000))") }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestBedError("chromium did not open its DevTools port within \(timeout)")
    }

    /// Runs `body` with the first page's DevTools session.
    func withPage<T: Sendable>(_ body: @escaping @Sendable (Page) async throws -> T) async throws -> T {
        let list = try HTTPGet.fetch(port: port, path: "/json/list")
        guard case .array(let targets) = try JSONParser.parse(Array(list.body.utf8)),
              let page = targets.first(where: { $0["type"] == "page" }), let id = page["id"]?.stringValue else {
            throw TestBedError("chromium lists no page: \(list.body.prefix(500))")
        }
        // Built here: Chromium writes the URL with the Host header it was asked with, which has no port here.
        let url = "ws://127.0.0.1:\(port)/devtools/page/\(id)"
        let result = Outcome<T>()
        _ = try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 64 << 20), logger: Logger(label: "test.cdp")) {
            inbound, outbound, _ in
            let session = Page(send: { try await outbound.write(.text($0)) }, messages: inbound.messages(maxSize: 64 << 20).makeAsyncIterator())
            let outcome: Result<T, any Error>
            do { outcome = .success(try await body(session)) } catch { outcome = .failure(error) }
            result.value.withLock { $0 = outcome }
            try await outbound.close(.normalClosure, reason: nil)
        }
        guard let value = result.value.withLock({ $0 }) else { throw TestBedError("the DevTools session ended before the test did") }
        return try value.get()
    }

    /// One page's DevTools session: a call sends a command and waits for its answer.
    final class Page: @unchecked Sendable {
        // @unchecked: used only by the task that runs the session.
        private let send: @Sendable (String) async throws -> Void
        private var messages: WebSocketInboundMessageStream.AsyncIterator
        private var nextID = 0

        init(send: @escaping @Sendable (String) async throws -> Void, messages: WebSocketInboundMessageStream.AsyncIterator) {
            self.send = send
            self.messages = messages
        }

        func call(_ method: String, _ params: [String: JSONValue] = [:]) async throws -> JSONValue {
            nextID += 1
            let id = nextID
            try await send(JSONText.serialize(["id": .int(Int64(id)), "method": .string(method), "params": .object(params)]))
            while let message = try await messages.next() {
                guard case .text(let text) = message, let value = try? JSONParser.parse(Array(text.utf8)), value["id"] == .int(Int64(id)) else { continue }
                if let error = value["error"] { throw TestBedError("DevTools \(method): \(JSONText.serialize(error))") }
                return value["result"] ?? .null
            }
            throw TestBedError("the DevTools connection closed during \(method)")
        }

        /// The value of a script (an expression; a promise is awaited), as JSON.
        func evaluate(_ expression: String) async throws -> JSONValue {
            let r = try await call("Runtime.evaluate", ["expression": .string(expression), "returnByValue": true, "awaitPromise": true])
            if let details = r["exceptionDetails"] { throw TestBedError("the page's script threw: \(JSONText.serialize(details).prefix(800))") }
            return r["result"]?["value"] ?? .null
        }

        /// Waits until `expression` is true in the page.
        func wait(until expression: String, timeout: Duration = .seconds(30)) async throws {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if try await evaluate("Boolean(\(expression))") == .bool(true) { return }
                try await Task.sleep(for: .milliseconds(250))
            }
            let state = try await evaluate("JSON.stringify({error: window.vmpulsePanel && window.vmpulsePanel.lastError, live: document.getElementById('live') && document.getElementById('live').textContent})")
            throw TestBedError("the page never had \(expression) within \(timeout): \(state)")
        }

        /// A PNG of the page as it is drawn.
        func screenshot() async throws -> Data {
            let r = try await call("Page.captureScreenshot", ["format": "png", "captureBeyondViewport": true])
            guard let text = r["data"]?.stringValue, let png = Data(base64Encoded: text) else { throw TestBedError("no screenshot data") }
            return png
        }
    }
}

/// What a session's closure produced, handed out of the WebSocket's @Sendable handler.
final class Outcome<T: Sendable>: Sendable {
    let value = Mutex<Result<T, any Error>?>(nil)
}
