import VMPulseCore

/// What an answer on the agent's port is: the agent's stats, the agent refusing the
/// request, or something else (a web server's page, a JSON document of another kind).
/// Only the shapes the agent serves are taken (`StatsEndpoint`): 200 with the records
/// (`application/json`: an array of records, each with name, uuid, params and
/// `"source": "agent"`; `text/plain`: the `virsh domstats` form), or 400/404 with
/// `{"error": "..."}` as JSON.
enum AgentAnswer: Equatable {
    case stats
    case refused(String)
    case notAnAgent(String)

    static func check(_ answer: AgentClient.Response, json: Bool) -> AgentAnswer {
        let type = answer.headers.first(name: "Content-Type")?.lowercased() ?? ""
        let isJSON = type.hasPrefix("application/json")
        guard answer.status == 200 else {
            guard [400, 404].contains(answer.status), isJSON,
                  let message = (try? JSONParser.parse(Array(answer.body.utf8)))?["error"]?.stringValue
            else { return .notAnAgent("not the agent's error form: HTTP 400 or 404 with {\"error\": ...} as JSON") }
            return .refused(message)
        }
        if json {
            guard isJSON else { return .notAnAgent("expected application/json") }
            let records: [StatsRecord]
            do {
                records = try StatsFormat.parseJSON(Array(answer.body.utf8))
            } catch {
                return .notAnAgent("not the agent's records: \(error)")
            }
            guard records.allSatisfy({ $0.source == "agent" }) else { return .notAnAgent("records that do not say \"source\": \"agent\"") }
            return .stats
        }
        guard type.hasPrefix("text/plain") else { return .notAnAgent("expected text/plain") }
        return isStatsText(answer.body) ? .stats : .notAnAgent("not the stats text form (Domain: '...' and key=value lines)")
    }

    /// The `virsh domstats` form as `StatsFormat.text` writes it: records of a
    /// `Domain: 'NAME'` line, `  key=value` lines and a blank line; nothing else.
    static func isStatsText(_ body: String) -> Bool {
        guard !body.isEmpty else { return true }  // no VM
        guard body.hasSuffix("\n\n"), body.hasPrefix("Domain: '") else { return false }
        var inRecord = false
        let space = UInt8(ascii: " ")
        for line in Array(body.utf8).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            let bytes = Array(line)
            if bytes.isEmpty {
                inRecord = false
            } else if bytes.starts(with: "Domain: '".utf8), bytes.last == UInt8(ascii: "'"), bytes.count > 10 {
                guard !inRecord else { return false }
                inRecord = true
            } else if inRecord, bytes.count > 3, bytes[0] == space, bytes[1] == space, let eq = bytes.firstIndex(of: UInt8(ascii: "=")),
                      eq > 2, !bytes[2..<eq].contains(space) {
                continue
            } else {
                return false
            }
        }
        return true
    }
}
