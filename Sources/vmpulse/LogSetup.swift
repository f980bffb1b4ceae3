import Glibc
import Logging

/// Sends logs to standard error (standard output carries the command's results),
/// at the level of `VMPULSE_LOG` (trace, debug, info, notice, warning, error); the default is the command's.
enum LogSetup {
    static func bootstrap(defaultLevel: Logger.Level = .warning) {
        let raw = getenv("VMPULSE_LOG").map { String(cString: $0) } ?? defaultLevel.rawValue
        let level = Logger.Level(rawValue: raw.lowercased()) ?? defaultLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
