import Foundation
import Testing
import VMPulseCore

@Suite struct StatsFormatTests {
    let records = [
        StatsRecord(name: "vm1", uuid: "u-1", params: [
            StatsParam("state.state", .int(1)),
            StatsParam("block.0.name", .string("drive0")),
            StatsParam("block.0.wr.bytes", .uint(UInt64.max)),
            StatsParam("x.ratio", .double(0.5)),
            StatsParam("x.flag", .bool(true)),
        ]),
        StatsRecord(name: "we\"ird\nname", uuid: "", params: [], errors: ["block: broken"]),
    ]

    @Test func textFollowsVirshDomstats() {
        let text = StatsFormat.text(records)
        #expect(text == """
            Domain: 'vm1'
              state.state=1
              block.0.name=drive0
              block.0.wr.bytes=18446744073709551615
              x.ratio=0.500000
              x.flag=yes

            Domain: 'we"ird\\nname'


            """)
    }

    @Test func jsonIsOneDocumentWithTypedValuesInOrder() throws {
        let json = StatsFormat.json(records)
        let parsed = try JSONParser.parse(Array(json.utf8))
        let array = try #require(parsed.arrayValue)
        #expect(array.count == 2)
        #expect(array[0]["name"] == .string("vm1"))
        #expect(array[0]["uuid"] == .string("u-1"))
        #expect(array[0]["params"]?["block.0.wr.bytes"] == .uint(UInt64.max))
        #expect(array[0]["params"]?["state.state"] == .int(1))
        #expect(array[0]["params"]?["x.ratio"] == .double(0.5))
        #expect(array[0]["params"]?["x.flag"] == .bool(true))
        #expect(array[0]["errors"] == nil)
        #expect(array[1]["name"] == .string("we\"ird\nname"))
        #expect(array[1]["errors"] == .array(["block: broken"]))
        // Order is kept: state before block in the text.
        let state = try #require(json.range(of: "state.state"))
        let block = try #require(json.range(of: "block.0.name"))
        #expect(state.lowerBound < block.lowerBound)
    }

    @Test func emptyListIsAnEmptyArray() throws {
        #expect(try JSONParser.parse(Array(StatsFormat.json([]).utf8)) == .array([]))
        #expect(StatsFormat.text([]) == "")
    }

    @Test func doublesPrintWithSixDecimals() {
        #expect(TypedValue.double(-1.25).text == "-1.250000")
        #expect(TypedValue.double(1234567.0000004).text == "1234567.000000")
        #expect(TypedValue.double(0.0000005).text == "0.000001")
    }

    @Test func controlCharactersAreEscaped() {
        #expect(JSONText.quoted("a\u{01}b\t") == "\"a\\u0001b\\t\"")
    }
}

/// Names and strings from a VM may hold anything; the text form stays one line per key.
@Suite struct TextEscapingTests {
    @Test func aNameWithANewlineStaysOneRecord() {
        var record = StatsRecord(name: "evil\nDomain: 'fake'", uuid: "u")
        record.params = [StatsParam("block.0.path", .string("/img\r\nx=1")), StatsParam("state.state", .int(1))]
        let text = StatsFormat.text([record])
        #expect(text == "Domain: 'evil\\nDomain: \\'fake\\''\n  block.0.path=/img\\r\\nx=1\n  state.state=1\n\n")
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("Domain:") }.count == 1)
    }

    @Test func plainNamesAreUnchangedAndOddOnesEscaped() {
        #expect(StatsFormat.escaped("web-1.example_vm") == "web-1.example_vm")
        #expect(StatsFormat.escaped("ünïcödé") == "ünïcödé")
        #expect(StatsFormat.escaped("a\\b") == "a\\\\b")
        #expect(StatsFormat.escaped("\u{1b}[31mred\u{7f}") == "\\u{1b}[31mred\\u{7f}")
        #expect(StatsFormat.escaped("line\u{2028}sep\u{85}") == "line\\u{2028}sep\\u{85}")
        #expect(StatsFormat.escaped("tab\there") == "tab\\there")
    }
}
