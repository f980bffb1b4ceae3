import QMP
import VMPulseCore

/// One QMP command to run for a stats pass.
struct QMPQuery: Hashable, Sendable {
    var command: String
    var arguments: [String: JSONValue]?

    init(_ command: String, _ arguments: [String: JSONValue]? = nil) {
        self.command = command
        self.arguments = arguments
    }
}

/// The replies of one pass, by query. A query that failed holds its error.
struct QMPReplies: Sendable {
    var results: [QMPQuery: Result<JSONValue, QMPError>] = [:]

    /// The reply to `query`; throws its error, or says it was never asked.
    func reply(_ query: QMPQuery) throws(QMPError) -> JSONValue {
        guard let result = results[query] else {
            throw .unexpectedReply(command: query.command, detail: "not queried")
        }
        return try result.get()
    }

    /// The first failure that means the monitor stopped answering or broke during the pass
    /// (a timeout, or an error that closed the connection); nil when the monitor is fine.
    var monitorFailure: QMPError? {
        for result in results.values {
            if case .failure(let error) = result, error.isFatalForConnection || error.isTimeout { return error }
        }
        return nil
    }

    /// Runs all queries at once on one connection, in one write (QEMU answers in order).
    static func run(_ queries: some Sequence<QMPQuery>, on client: QMPClient, timeout: Duration) async -> QMPReplies {
        let list = Array(Set(queries))
        let results = await client.executeAll(list.map { ($0.command, $0.arguments) }, timeout: timeout)
        var replies = QMPReplies()
        for (query, result) in zip(list, results) { replies.results[query] = result }
        return replies
    }
}
