import Glibc
import Logging
import Synchronization
import Subprocess
import SystemPackage

/// An external program grows the device (lvextend, a storage array's API). It reads the
/// request as `name=value` lines on standard input (vm_name, vm_uuid, disk, node, device,
/// current_size, requested_size), reports success with exit code 0, and is killed (its
/// whole process group) after `timeout` seconds. Its output is logged.
public struct CommandExtender: DiskExtender {
    public let program: String
    public let arguments: [String]
    public let timeout: Duration
    public let device: String
    let logger: Logger

    public init(program: String, arguments: [String], timeout: Duration, device: String, logger: Logger) {
        self.program = program
        self.arguments = arguments
        self.timeout = timeout
        self.device = device
        self.logger = logger
    }

    public func currentSize() throws(ExtenderError) -> UInt64 { try DeviceSize.bytes(device) }

    public func extend(to size: UInt64, request: ExtensionRequest) async throws(ExtenderError) {
        var options = PlatformOptions()
        options.processGroupID = 0  // its own group, so a timeout kills what it started too
        let limit = 64 * 1024
        let timeout = self.timeout
        let outcome: (status: TerminationStatus, output: String, errors: String, timedOut: Bool)
        let programGroup = ProcessGroupBox()
        do {
            let result = try await withTaskCancellationHandler { try await run(
                .path(FilePath(program)), arguments: Arguments(arguments), platformOptions: options,
                input: .string(request.lines), output: .sequence, error: .sequence
            ) { execution in
                programGroup.set(execution.processIdentifier.value)
                return try await withThrowingTaskGroup(of: (String?, String?, Bool).self) { group in
                    group.addTask { (try await Self.collect(execution.standardOutput, limit: limit), nil, false) }
                    group.addTask { (nil, try await Self.collect(execution.standardError, limit: limit), false) }
                    group.addTask {
                        // Whatever ends the wait (the timeout, the program's end, the agent
                        // stopping), nothing the program started outlives it.
                        let timedOut = (try? await Task.sleep(for: timeout)) != nil
                        try? execution.send(signal: .kill, toProcessGroup: true)
                        return (nil, nil, timedOut)
                    }
                    var out = "", err = "", timedOut = false, readersDone = 0
                    while readersDone < 2, let (o, e, t) = try await group.next() {
                        if let o { out = o; readersDone += 1 }
                        if let e { err = e; readersDone += 1 }
                        if t { timedOut = true }
                    }
                    group.cancelAll()
                    return (out, err, timedOut)
                }
            } } onCancel: {
                programGroup.killAll()  // the agent is stopping: the program goes with it
            }
            outcome = (result.terminationStatus, result.closureResult.0, result.closureResult.1, result.closureResult.2)
        } catch {
            throw ExtenderError("cannot run \(program): \(error)")
        }
        let summary = "\(program) for \(request.vmName)/\(request.disk) (\(request.currentSize) -> \(request.requestedSize) bytes)"
        if !outcome.output.isEmpty { logger.info("\(summary) said: \(outcome.output)") }
        if !outcome.errors.isEmpty { logger.warning("\(summary) wrote to stderr: \(outcome.errors)") }
        if outcome.timedOut { throw ExtenderError("\(program) did not finish within \(timeout); killed") }
        guard case .exited(0) = outcome.status else {
            let last = outcome.errors.split(separator: "\n").last.map(String.init) ?? ""
            throw ExtenderError("\(program) failed (\(outcome.status))\(last.isEmpty ? "" : ": " + last)")
        }
    }

    /// The program's process group, for killing it from a cancellation handler.
    private final class ProcessGroupBox: Sendable {
        private let pgid = Mutex<pid_t>(0)
        func set(_ id: pid_t) { pgid.withLock { $0 = id } }
        func killAll() {
            let id = pgid.withLock { $0 }
            if id > 0 { _ = Glibc.kill(-id, SIGKILL) }
        }
    }

    private static func collect(_ sequence: SubprocessOutputSequence, limit: Int) async throws -> String {
        var text = ""
        for try await line in sequence.strings() where text.utf8.count < limit {
            text += (text.isEmpty ? "" : "\n") + line
        }
        return text
    }
}
