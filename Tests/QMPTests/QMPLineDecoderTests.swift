import NIOCore
import NIOEmbedded
@testable import QMP
import Testing
import VMPulseCore

/// The line decoder and the message classifier at their bounds (the contract the fuzz
/// target Fuzz/FuzzQMP checks on random streams, here on the edge cases by name).
@Suite struct QMPLineDecoderTests {
    /// Feeds `chunks` to a decoder with `limit`; the lines it gave and the error it threw.
    func decode(_ chunks: [String], limit: Int) -> (lines: [String], error: QMPError?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(QMPLineDecoder(maxLength: limit)))
        var lines: [String] = []
        var failure: QMPError?
        func drain() {
            while let line = try? channel.readInbound(as: ByteBuffer.self) { lines.append(String(buffer: line)) }
        }
        for chunk in chunks where failure == nil {
            do { try channel.writeInbound(channel.allocator.buffer(string: chunk)) } catch { failure = error as? QMPError }
            drain()
        }
        do { _ = try channel.finish() } catch { if failure == nil { failure = error as? QMPError } }
        drain()
        return (lines, failure)
    }

    @Test func linesEndInLFOrCRLFWhateverTheChunks() {
        let result = decode(["{\"a\":1}\r", "\n{\"b\"", ":2}\n", "\n"], limit: 64)
        #expect(result.lines == ["{\"a\":1}", "{\"b\":2}", ""])
        #expect(result.error == nil)
    }

    @Test func aLineOfExactlyTheLimitIsTakenOneMoreIsRefused() {
        let limit = 16
        let exact = String(repeating: "x", count: limit)
        #expect(decode([exact + "\n"], limit: limit).lines == [exact])
        #expect(decode([exact + "x\n"], limit: limit).error == .messageTooLarge(limit: limit))
        // Refused as soon as the limit is passed, before any line end arrives.
        #expect(decode([exact, "x"], limit: limit).error == .messageTooLarge(limit: limit))
        // The CR counts: a limit-long line plus CR is over the limit (what the fuzz target checks).
        #expect(decode([exact + "\r\n"], limit: limit).error == .messageTooLarge(limit: limit))
    }

    @Test func aMessageCutOffByTheEndOfTheStreamIsAnError() {
        let result = decode(["{\"return\": {}}\r\n{\"ret"], limit: 64)
        #expect(result.lines == ["{\"return\": {}}"])
        guard case .connectionClosed(let detail)? = result.error else {
            Issue.record("expected connectionClosed, got \(String(describing: result.error))")
            return
        }
        #expect(detail.contains("5 bytes without a line end: {\"ret"))
        // White space after the last line end is no message.
        #expect(decode(["{}\n \r\t"], limit: 64).error == nil)
    }

    /// A timestamp past what 64 bits of microseconds hold is dropped, not wrapped round.
    @Test func anEventTimestampThatWouldOverflowIsDropped() throws {
        let event: JSONValue = ["event": "STOP", "timestamp": ["seconds": .int(Int64.max), "microseconds": 999_999]]
        guard case .event(let e) = try QMPMessage.classify(event, excerpt: "") else {
            Issue.record("not an event")
            return
        }
        #expect(e.name == "STOP")
        #expect(e.timestampMicroseconds == nil)
        let fine: JSONValue = ["event": "STOP", "timestamp": ["seconds": 1_795_593_733, "microseconds": 335_681]]
        guard case .event(let f) = try QMPMessage.classify(fine, excerpt: "") else { return }
        #expect(f.timestampMicroseconds == 1_795_593_733_335_681)
    }
}
