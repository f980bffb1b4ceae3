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

    /// Runs all queries at once on one connection (QMP pipelines them; QEMU answers in order).
    static func run(_ queries: some Sequence<QMPQuery>, on client: QMPClient, timeout: Duration) async -> QMPReplies {
        await withTaskGroup(of: (QMPQuery, Result<JSONValue, QMPError>).self) { group in
            for query in Set(queries) {
                group.addTask {
                    do throws(QMPError) {
                        return (query, .success(try await client.execute(query.command, arguments: query.arguments, timeout: timeout)))
                    } catch {
                        return (query, .failure(error))
                    }
                }
            }
            var replies = QMPReplies()
            for await (query, result) in group { replies.results[query] = result }
            return replies
        }
    }
}
