import API
import Testing
import VMPulseCore

/// The JSON-RPC 2.0 framing on its own: every malformed request gets the specification's
/// error with an id a client can match, and nothing in a request traps.
@Suite struct JSONRPCTests {
    /// Answers `echo` with its params and fails everything else with -32601.
    func answer(_ text: String, maxBatch: Int = 10, maxResponseBytes: Int = JSONRPC.maxResponseBytes) -> JSONValue? {
        let reply = JSONRPC.reply(Array(text.utf8), maxBatch: maxBatch, maxResponseBytes: maxResponseBytes) { call in
            call.method == "echo" ? .success(call.params ?? .null) : .failure(RPCError(RPCError.methodNotFound, "no \(call.method)"))
        }
        return reply.map { text in (try? JSONParser.parse(Array(text.utf8))) ?? .string("unparsable: \(text)") }
    }

    func code(_ reply: JSONValue?) -> Int64? { reply?["error"]?["code"]?.int64Value }

    @Test func aCallIsAnsweredWithItsID() throws {
        let reply = try #require(answer(#"{"jsonrpc": "2.0", "id": "a-1", "method": "echo", "params": [1, 2]}"#))
        #expect(reply["id"] == .string("a-1"))
        #expect(reply["jsonrpc"] == .string("2.0"))
        #expect(reply["result"] == .array([.int(1), .int(2)]))
        #expect(reply["error"] == nil)
        #expect(answer(#"{"jsonrpc": "2.0", "id": null, "method": "echo"}"#)?["id"] == .null)
        #expect(answer(#"{"jsonrpc": "2.0", "id": 18446744073709551615, "method": "echo"}"#)?["id"] == .uint(UInt64.max))
    }

    @Test func malformedJSONIsAParseErrorWithANullID() {
        for text in [#"{"jsonrpc": "2.0", "id": 1, "method": "echo""#, "", "\u{FF}\u{FE}", "{]", String(repeating: "[", count: 100_000)] {
            let reply = answer(text)
            #expect(code(reply) == -32700, "\(text.prefix(20))")
            #expect(reply?["id"] == .null)
        }
    }

    @Test func invalidRequestsAreRefusedEachWithItsReason() {
        let cases = [
            "42", #""echo""#, "null",
            #"{"id": 1, "method": "echo"}"#,  // no jsonrpc
            #"{"jsonrpc": "1.0", "id": 1, "method": "echo"}"#,
            #"{"jsonrpc": "2.0", "id": 1}"#,  // no method
            #"{"jsonrpc": "2.0", "id": 1, "method": 7}"#,
            #"{"jsonrpc": "2.0", "id": {"a": 1}, "method": "echo"}"#,  // id of the wrong type
            #"{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": 3}"#,
            #"{"jsonrpc": "2.0", "id": 1, "method": "echo", "extra": true}"#,
        ]
        for text in cases {
            let reply = answer(text)
            #expect(code(reply) == -32600, "\(text)")
            #expect(reply?["error"]?["message"]?.stringValue?.isEmpty == false)
        }
        // The id is echoed when it is a valid one, even though the request is not.
        #expect(answer(#"{"jsonrpc": "2.0", "id": 9, "method": 7}"#)?["id"] == .int(9))
        #expect(answer(#"{"jsonrpc": "2.0", "id": [1], "method": "echo"}"#)?["id"] == .null)
    }

    @Test func unknownMethodsAre32601() {
        #expect(code(answer(#"{"jsonrpc": "2.0", "id": 1, "method": "nope"}"#)) == -32601)
    }

    @Test func notificationsGetNoAnswerButStillRun() {
        #expect(answer(#"{"jsonrpc": "2.0", "method": "echo"}"#) == nil)
        #expect(answer(#"[{"jsonrpc": "2.0", "method": "echo"}, {"jsonrpc": "2.0", "method": "nope"}]"#) == nil)
        var ran = 0
        _ = JSONRPC.reply(Array(#"{"jsonrpc": "2.0", "method": "x"}"#.utf8), maxBatch: 1) { _ in ran += 1; return .success(.null) }
        #expect(ran == 1)
    }

    @Test func batchesAnswerEveryCallInOrder() throws {
        let reply = try #require(answer(#"""
            [{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"a": 1}},
             {"jsonrpc": "2.0", "method": "echo"},
             {"jsonrpc": "2.0", "id": 2, "method": "nope"},
             5,
             {"jsonrpc": "2.0", "id": 3, "method": "echo"}]
            """#))
        let items = try #require(reply.arrayValue)
        #expect(items.count == 4)
        #expect(items.map { $0["id"] } == [.int(1), .int(2), .null, .int(3)])
        #expect(items[0]["result"] == .object(["a": .int(1)]))
        #expect(code(items[1]) == -32601)
        #expect(code(items[2]) == -32600)
    }

    @Test func anEmptyOrOversizedBatchIsRefusedWhole() throws {
        #expect(code(answer("[]")) == -32600)
        let call = #"{"jsonrpc": "2.0", "id": 1, "method": "echo"}"#
        let big = "[" + Array(repeating: call, count: 10_000).joined(separator: ",") + "]"
        var ran = 0
        let text = JSONRPC.reply(Array(big.utf8), maxBatch: 1000) { _ in ran += 1; return .success(.null) }
        let reply = text.flatMap { try? JSONParser.parse(Array($0.utf8)) }
        #expect(code(reply) == -32600)
        #expect(reply?["error"]?["message"]?.stringValue?.contains("10000") == true)
        #expect(ran == 0, "no call of a refused batch runs")
        #expect(try #require(answer("[" + Array(repeating: call, count: 10).joined(separator: ",") + "]")?.arrayValue).count == 10)
    }

    @Test func anAnswerOverTheBudgetBecomesAnErrorAndStopsTheBatch() throws {
        let big = String(repeating: "x", count: 400)
        let call = #"{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [""# + big + #""]}"#
        let items = try #require(answer("[" + Array(repeating: call, count: 10).joined(separator: ",") + "]", maxResponseBytes: 2000)?.arrayValue)
        #expect(items.count == 10, "every call with an id is answered")
        let answered = items.filter { $0["result"] != nil }.count
        #expect(answered == 4, "as many as fit in 2000 bytes")
        #expect(items.dropFirst(answered).allSatisfy { code($0) == -32005 })
        #expect(code(answer(call, maxResponseBytes: 100)) == -32005)
        #expect(answer(call, maxResponseBytes: 100)?["id"] == .int(1))
    }

    @Test func notificationsArePlainJSONRPC() {
        let n = JSONRPC.notification(method: "event", params: ["kind": "status"])
        #expect(n == .object(["jsonrpc": "2.0", "method": "event", "params": ["kind": "status"]]))
    }
}
