import Glibc
import Logging

/// Sends logs to standard error (standard output carries the command's results),
/// at the level of `VMPULSE_LOG` (trace, debug, info, notice, warning, error), warning by default.
enum LogSetup {
    static func bootstrap() {
        let raw = getenv("VMPULSE_LOG").map { String(cString: $0) } ?? "warning"
        let level = Logger.Level(rawValue: raw.lowercased()) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
