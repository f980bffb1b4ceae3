import Logging

/// An external program grows the device (lvextend, a storage array's API). It reads the
/// request as `name=value` lines on standard input (vm_name, vm_uuid, disk, node, device,
/// current_size, requested_size), reports success with exit code 0, and is killed (its
/// whole process group) after `timeout` (`ProgramRunner`). Its output is logged.
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

    public func extend(to size: UInt64, request: ExtensionRequest) async throws(ExtenderError) {
        let finished: ProgramRunner.Outcome
        do throws(ProgramError) {
            finished = try await ProgramRunner.run(program: program, arguments: arguments, input: request.lines, timeout: timeout)
        } catch {
            throw ExtenderError(error.message)
        }
        let summary = "\(program) for \(request.vmName)/\(request.disk) (\(request.currentSize) -> \(request.requestedSize) bytes)"
        if !finished.output.isEmpty { logger.info("\(summary) said: \(finished.output)") }
        if !finished.errors.isEmpty { logger.warning("\(summary) wrote to stderr: \(finished.errors)") }
        if finished.succeeded { return }
        if finished.timedOut { throw ExtenderError("\(program) did not finish within \(timeout); killed") }
        let last = finished.lastError
        throw ExtenderError("\(program) failed (\(finished.status))\(last.isEmpty ? "" : ": " + last)")
    }
}
