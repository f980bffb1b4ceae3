import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// The panel's endpoints against careless and hostile clients, on a real agent.
@Suite(.serialized) struct PanelBadInputTests {
    static func stream(_ agent: AgentProcess, query: String = "", token: String? = nil) throws -> (RawConnection, String) {
        let c = try RawConnection(port: agent.port)
        let auth = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
        c.send(Array("GET /v1/panel/stream\(query) HTTP/1.1\r\nHost: vmpulse\r\n\(auth)\r\n".utf8))
        return (c, try c.readHead())
    }

    /// Reads what the stream sends until `text` has come (or 10 s have passed).
    static func read(_ c: RawConnection, until text: String) -> String {
        var seen: [UInt8] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, !String(decoding: seen, as: UTF8.self).contains(text) {
            guard let b = try? c.read(1) else { break }
            seen += b
        }
        return String(decoding: seen, as: UTF8.self)
    }

    @Test func streamsAreLimitedFreedWhenAClientGoesAndEndAtShutdown() async throws {
        let bed = try TestBed(prefix: "panelbad")
        defer { bed.shutdown() }
        var spec = GuestSpec(name: "pb-1")
        spec.paused = true
        _ = try bed.launch(spec)
        let agent = try await HostAPIBadInputTests.agent(bed, "api:\n  max_subscribers: 2\n")

        var (first, head) = try Self.stream(agent)
        #expect(head.hasPrefix("HTTP/1.1 200") && head.lowercased().contains("content-type: text/event-stream"), "\(head)")
        #expect(Self.read(first, until: "\"pb-1\"").contains("event: overview"))
        let (gone, goneHead) = try Self.stream(agent, query: "?vm=%2Fno%2Fsuch.sock")
        #expect(goneHead.hasPrefix("HTTP/1.1 200"))
        #expect(Self.read(gone, until: "such.sock\"}").contains("event: gone\ndata: {\"id\":\"/no/such.sock\"}"), "a VM that is not watched is said to be gone")
        // A third is refused while two are open, and says which setting to raise.
        let (third, refused) = try Self.stream(agent)
        #expect(refused.hasPrefix("HTTP/1.1 503"), "\(refused)")
        #expect(Self.read(third, until: "}").contains("api.max_subscribers"))
        // A client that goes away frees its place.
        close(first.fd)
        let deadline = ContinuousClock.now + .seconds(10)
        var again = ""
        while ContinuousClock.now < deadline {
            let (c, h) = try Self.stream(agent)
            if h.hasPrefix("HTTP/1.1 200") { again = h; first = c; break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(again.hasPrefix("HTTP/1.1 200"), "a place came free after a client closed")
        _ = first
        // Streams never end on their own, but the agent's shutdown ends them.
        let start = ContinuousClock.now
        #expect(try await agent.stop(timeout: .seconds(15)) == 0)
        #expect(ContinuousClock.now - start < .seconds(5), "stopped in \(ContinuousClock.now - start) with two streams open")
        #expect(gone.closedByPeer(within: .seconds(2)))
    }

    @Test func badPanelQueriesGetTheirErrors() async throws {
        let bed = try TestBed(prefix: "panelq")
        defer { bed.shutdown() }
        let agent = try await HostAPIBadInputTests.agent(bed)
        let none = try HTTPGet.fetch(port: agent.port, path: "/v1/panel/vm")
        #expect(none.status == 400 && none.body.contains("/v1/panel/vm?id=ID"), "\(none.body)")
        let long = String(repeating: "x", count: 5000)
        let unknown = try HTTPGet.fetch(port: agent.port, path: "/v1/panel/vm?id=" + long)
        #expect(unknown.status == 404 && unknown.body.contains("no VM has the id") && unknown.body.count < 500, "\(unknown.body)")
        let page = try HTTPGet.fetch(port: agent.port, path: "/")
        #expect(page.status == 200 && page.headers["content-security-policy"]?.contains("script-src 'self'") == true, "\(page.headers)")
        #expect(try HTTPGet.fetch(port: agent.port, path: "/panel.js").headers["content-type"]?.hasPrefix("text/javascript") == true)
        #expect(try HTTPGet.fetch(port: agent.port, path: "/panel.js.map").status == 404)
        let (_, longHead) = try Self.stream(agent, query: "?vm=" + String(repeating: "y", count: 5000))
        #expect(longHead.hasPrefix("HTTP/1.1 400"), "an id too long to echo: \(longHead)")
    }

    @Test func withATokenThePageLoadsAndItsDataNeedsTheToken() async throws {
        let bed = try TestBed(prefix: "paneltok")
        defer { bed.shutdown() }
        let token = "panel-" + UUID().uuidString
        try "\(token)\n".write(toFile: bed.directory + "/tokens", atomically: true, encoding: .utf8)
        let agent = try await HostAPIBadInputTests.agent(bed, "api:\n  token_file: \(bed.directory)/tokens\n")
        for path in ["/", "/panel.js", "/panel.css"] {
            #expect(try HTTPGet.fetch(port: agent.port, path: path).status == 200, "\(path) holds no data")
        }
        for path in ["/v1/panel", "/v1/panel/vm?id=x", "/v1/panel/stream"] {
            #expect(try HTTPGet.fetch(port: agent.port, path: path).status == 401, "\(path)")
        }
        let (_, head) = try Self.stream(agent, token: token)
        #expect(head.hasPrefix("HTTP/1.1 200"), "\(head)")

        // In the browser: the page asks for the token, then goes live with it.
        let browser = try HeadlessChromium(url: "http://127.0.0.1:\(agent.port)/", directory: bed.directory + "/chromium")
        defer { browser.stop() }
        try await browser.waitListening()
        let literal = PanelTests.literal(token)
        try await browser.withPage { page in
            try await page.wait(until: "document.getElementById('login') && !document.getElementById('login').hidden")
            #expect(try await page.evaluate("document.getElementById('live').textContent") == "token needed")
            _ = try await page.evaluate("(() => { document.getElementById('token').value = \(literal); document.getElementById('login').requestSubmit(); })()")
            try await page.wait(until: "window.vmpulsePanel.updates > 0 && document.getElementById('live').textContent === 'live'")
        }
    }
}
