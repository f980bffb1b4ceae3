import Testing
import VMPulseCore

@Suite struct JSONParserTests {
    func parse(_ text: String) throws -> JSONValue {
        try JSONParser.parse(Array(text.utf8))
    }

    @Test func parsesQMPShapes() throws {
        let v = try parse(#"{"return": [{"wr_bytes": 8388608, "timed_stats": [], "ok": true, "x": null, "f": 1.5e2, "s": "a\"b\\c\/\u00e9\ud83d\ude00"}], "id": 7}"#)
        let first = try #require(v["return"]?.arrayValue?.first)
        #expect(first["wr_bytes"] == .int(8_388_608))
        #expect(first["timed_stats"] == .array([]))
        #expect(first["ok"] == .bool(true))
        #expect(first["x"] == .null)
        #expect(first["f"] == .double(150))
        #expect(first["s"] == .string("a\"b\\c/é😀"))
        #expect(v["id"]?.uint64Value == 7)
    }

    @Test func keepsSixtyFourBitIntegers() throws {
        #expect(try parse("18446744073709551615") == .uint(UInt64.max))
        #expect(try parse("-9223372036854775808") == .int(Int64.min))
        #expect(try parse("9223372036854775807") == .int(Int64.max))
        #expect(try parse("-0") == .int(0))
    }

    @Test(arguments: [
        ("", "unexpected end"),
        ("{\"a\": 1", "unexpected end"),
        ("{\"a\" 1}", "expected ':'"),
        ("[1, 2", "unexpected end"),
        ("[1 2]", "expected ','"),
        ("{} x", "unexpected data after"),
        ("tru", "unexpected end"),
        ("nul!", "invalid literal"),
        ("\"abc", "unterminated string"),
        ("\"a\u{01}b\"", "control character"),
        ("\"\\x\"", "invalid escape"),
        ("\"\\ud800\"", "lone high surrogate"),
        ("\"\\u12g4\"", "bad hex digit"),
        ("01", "leading zero"),
        ("-", "needs digits"),
        ("1.", "fraction needs digits"),
        ("1e", "exponent needs digits"),
        ("1e999", "out of range"),
        ("garbage", "unexpected character"),
        ("{1: 2}", "expected a member name"),
    ])
    func rejectsMalformedInputWithAReason(input: String, reason: String) {
        do throws(JSONParseError) {
            _ = try JSONParser.parse(Array(input.utf8))
            Issue.record("'\(input)' parsed")
        } catch {
            #expect(error.reason.contains(reason), "'\(input)': \(error)")
        }
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test func boundsNesting() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        do throws(JSONParseError) {
            _ = try JSONParser.parse(Array(deep.utf8))
            Issue.record("deep nesting parsed")
        } catch {
            #expect(error.reason.contains("nesting deeper than 64"))
        }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try parse(ok)
    }

    @Test func serializeRoundTrips() throws {
        let value: JSONValue = ["execute": "qom-get", "arguments": ["path": "/machine/a\"b", "n": .uint(UInt64.max), "l": [true, .null, .double(0.25)]], "id": 3]
        #expect(try parse(JSONText.serialize(value)) == value)
    }
}
