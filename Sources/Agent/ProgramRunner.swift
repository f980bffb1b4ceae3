import Glibc
import Synchronization
import Subprocess
import SystemPackage

/// Runs an operator's program (a thin-disk extender, a heartbeat action): `name=value`
/// lines on its standard input, in a process group of its own, killed (the whole group)
/// after `timeout` or when the calling task is cancelled. Its output is kept (the first
/// 64 KiB of each stream).
public enum ProgramRunner {
    public struct Outcome: Sendable {
        public var status: TerminationStatus
        public var output: String
        public var errors: String
        public var timedOut: Bool

        public var succeeded: Bool {
            if case .exited(0) = status { return true }
            return false
        }

        /// The exit code, or 128 + the signal, as a shell reports it.
        public var code: Int {
            switch status {
            case .exited(let c): Int(c)
            case .signaled(let s): 128 + Int(s)
            }
        }

        /// The stderr's last line, for messages.
        public var lastError: String { errors.split(separator: "\n").last.map(String.init) ?? "" }
    }

    /// The program's run. Throws only when it could not be started at all.
    public static func run(program: String, arguments: [String], input lines: String, timeout: Duration) async throws(ProgramError) -> Outcome {
        let group = ProgramGroup()
        let input = try requestFile(lines)
        // Ours from here to the end, closed exactly once: swift-subprocess is told not to
        // close it (`closeAfterSpawningProcess: false`), because whether it has closed it
        // depends on how far spawning got; a second close of a number already reused
        // would close a QMP socket or the ledger (or trap in swift-subprocess).
        defer { try? input.close() }
        let finished: (status: TerminationStatus, output: String, errors: String)
        do {
            finished = try await withTaskCancellationHandler {
                try await withThrowingTaskGroup(of: (TerminationStatus, String, String)?.self) { tasks in
                    tasks.addTask { try await runProgram(program, arguments, input: input, group: group) }
                    tasks.addTask {
                        // The timeout covers the whole run, not the program's output: a
                        // wrapper that sends its output to a log of its own is not done
                        // when its pipes close.
                        guard (try? await Task.sleep(for: timeout)) != nil else { return nil }
                        group.timedOut()
                        return nil
                    }
                    while let next = try await tasks.next() {
                        guard let result = next else { continue }
                        tasks.cancelAll()
                        return result
                    }
                    throw ProgramError("\(program) ended without a status")
                }
            } onCancel: {
                group.killAll()  // the agent is stopping: the program goes with it
            }
        } catch let error as ProgramError {
            throw error
        } catch {
            throw ProgramError("cannot run \(program): \(error)")
        }
        // Whatever the program left running in its group (a helper it forked) goes too.
        group.killAll()
        return Outcome(status: finished.status, output: finished.output, errors: finished.errors, timedOut: group.didTimeOut)
    }

    /// Runs the program in a process group of its own and returns once it has exited,
    /// with what it wrote. It returns when the program exits even if a child it left
    /// holds its output open: swift-subprocess (1.0.2) ends the reads of the output when
    /// the process terminates (tested by
    /// `aProgramThatExitsAtOnceEndsTheExtensionWhateverItsChildrenHold`).
    private static func runProgram(_ program: String, _ arguments: [String], input: FileDescriptor, group: ProgramGroup) async throws -> (TerminationStatus, String, String) {
        var options = PlatformOptions()
        options.processGroupID = 0  // its own group, so a timeout kills what it started too
        let limit = 64 * 1024
        let result = try await Subprocess.run(
            .path(FilePath(program)), arguments: Arguments(arguments), platformOptions: options,
            input: .fileDescriptor(input, closeAfterSpawningProcess: false), output: .sequence, error: .sequence
        ) { execution in
            group.started(execution.processIdentifier.value)
            async let output = collect(execution.standardOutput, limit: limit)
            async let errors = collect(execution.standardError, limit: limit)
            return try await (output, errors)
        }
        return (result.terminationStatus, result.closureResult.0, result.closureResult.1)
    }

    /// The request as a file, read from its start, for the program's standard input. Not
    /// a pipe: a program that exits without reading it must not make the writer fail
    /// (swift-subprocess 1.0.2 traps when writing its input fails, and an unignored
    /// SIGPIPE would end the agent).
    private static func requestFile(_ text: String) throws(ProgramError) -> FileDescriptor {
        // An unlinked temporary file (memfd_create is not in Swift's Glibc module).
        let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(directory)/vmpulse-request-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw ProgramError("cannot make the program's input in \(directory): \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = unlink(String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self))
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, lseek(fd, 0, SEEK_SET) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw ProgramError("cannot make the program's input: \(reason)")
        }
        return FileDescriptor(rawValue: fd)
    }

    /// The program's process group, to kill it at the timeout or when the agent stops.
    private final class ProgramGroup: Sendable {
        private let state = Mutex<(pgid: pid_t, timedOut: Bool)>((0, false))
        func started(_ pid: pid_t) { state.withLock { $0.pgid = pid } }
        func timedOut() {
            state.withLock { $0.timedOut = true }
            killAll()
        }
        var didTimeOut: Bool { state.withLock { $0.timedOut } }
        func killAll() {
            let id = state.withLock { $0.pgid }
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

/// A program that could not be run.
public struct ProgramError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
