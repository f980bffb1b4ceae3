@testable import Engine
import Testing
import VMPulseCore

/// What an agent (or something posing as one) answers, read without trusting it.
@Suite struct AgentAnswersTests {
    func parse(_ text: String) throws -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    @Test func aRuntimeViewIsRead() throws {
        let r = try AgentAnswers.runtime(parse(#"""
            {"u1": {"status": "Up", "cpuUser": 1.5, "memUsage": 20, "elapsedTime": 30, "statsAge": 0.5, "hashes": {"info": "a", "status": "b"}},
             "u2": {"error": {"code": -32002, "message": "2 VMs claim u2"}}}
            """#), seen: 10)
        #expect(r.vms.map(\.uuid) == ["u1"])
        #expect(r.vms.first?.hashes == ["info": "a", "status": "b"])
        #expect(r.vms.first?.elapsed == 30)
        #expect(r.problems.count == 1)
    }

    @Test(arguments: [
        #"[]"#, #"{"u1": 5}"#, #"{"u1": {"hashes": {}}}"#, #"{"u1": {"status": "Up"}}"#,
        #"{"u1": {"status": "Up", "hashes": {"info": 5}}}"#,
        #"{"u1": {"status": "Up", "hashes": {}, "cpuUser": -1}}"#,
        #"{"u1": {"status": "Up", "hashes": {}, "memUsage": 1e308}}"#,
        #"{"u1": {"status": "Up", "hashes": {}, "elapsedTime": -5}}"#,
        #"{"u1": {"status": "Up", "hashes": {}, "elapsedTime": "x"}}"#,
        #"{"": {"status": "Up", "hashes": {}}}"#,
    ])
    func aLyingRuntimeViewIsRefused(_ text: String) throws {
        #expect(throws: AgentAnswers.Invalid.self) { try AgentAnswers.runtime(try parse(text), seen: 0) }
    }

    static let goodRow = #"{"rev": 1, "vm_uuid": "u", "vm_name": "n", "disk": "d", "disk_path": "/p", "period_start": 0, "period_end": 3600, "samples": 1, "#
        + IOCounter.allCases.map { "\"\($0.name)\": 0" }.joined(separator: ", ") + "}"

    func page(_ row: String, next: Int = 5) -> String {
        #"{"ledger": "L", "records": [\#(row)], "gaps": [], "next": \#(next), "nextGap": 0, "more": false}"#
    }

    @Test func aBillingPageIsRead() throws {
        let p = try AgentAnswers.billing(parse(page(Self.goodRow.replacingOccurrences(of: #""write_bytes": 0"#, with: #""write_bytes": 18446744073709551615"#))))
        #expect(p.rows.first?.usage.usage[.writeBytes] == UInt64.max)
        #expect(p.next == 5 && p.ledger == "L")
    }

    @Test(arguments: [
        (#""write_bytes": 0"#, #""write_bytes": -1"#), (#""write_bytes": 0"#, #""write_bytes": 18446744073709551616"#),
        (#""write_bytes": 0"#, #""write_bytes": 1.5"#), (#""write_bytes": 0"#, #""write_bytes": "5""#),
        (#""period_end": 3600"#, #""period_end": 0"#), (#""rev": 1"#, #""rev": 0"#), (#""rev": 1"#, #""rev": 9"#),
        (#""samples": 1"#, #""samples": -1"#), (#""vm_uuid": "u""#, #""vm_uuid": """#),
        (#""period_start": 0"#, #""period_start": -99999999999999"#),
    ])
    func aLyingBillingPageIsRefusedWhole(_ swap: (String, String)) throws {
        let row = Self.goodRow.replacingOccurrences(of: swap.0, with: swap.1)
        #expect(row != Self.goodRow)
        #expect(throws: AgentAnswers.Invalid.self) { try AgentAnswers.billing(try parse(page(row))) }
    }

    @Test func revisionsThatGoBackAreRefused() throws {
        let second = Self.goodRow.replacingOccurrences(of: #""rev": 1"#, with: #""rev": 1"#)
        #expect(throws: AgentAnswers.Invalid.self) { try AgentAnswers.billing(try parse(page(Self.goodRow + ", " + second))) }
        #expect(throws: AgentAnswers.Invalid.self) {
            try AgentAnswers.billing(try parse(#"{"ledger": "L", "records": [], "gaps": [], "next": -1, "nextGap": 0, "more": false}"#))
        }
        #expect(throws: AgentAnswers.Invalid.self) {
            try AgentAnswers.billing(try parse(#"{"ledger": "", "records": [], "gaps": [], "next": 0, "nextGap": 0, "more": false}"#))
        }
    }

    @Test func aPerVMAnswerTakesOnlyWhatWasAskedAndAnswered() throws {
        let r = try AgentAnswers.perVM(parse(#"{"a": {"pid": 1}, "b": {"error": {"code": -32001}}, "c": {"pid": 3}}"#), asked: ["a", "b"])
        #expect(Array(r.keys) == ["a"])
    }
}
