import Foundation
import NIOCore
import NIOPosix

/// The test guest's command shell: one shell command per line on its second
/// serial port, each reply ended by `VMPULSE-END <status>` (testbed/guest-shell.sh).
public actor GuestShell {
    /// What one command printed and its exit status.
    public struct Reply: Sendable {
        public var status: Int
        public var output: String
    }

    private let channel: any Channel
    private let lines: LineBuffer

    private init(channel: any Channel, lines: LineBuffer) {
        self.channel = channel
        self.lines = lines
    }

    static func connect(path: String) async throws -> GuestShell {
        let lines = LineBuffer()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(LineCollector(lines: lines))
                }
            }
            .connect(unixDomainSocketPath: path).get()
        return GuestShell(channel: channel, lines: lines)
    }

    /// Runs one shell command in the guest and waits for it to finish.
    public func run(_ command: String, timeout: Duration = .seconds(120)) async throws -> Reply {
        precondition(!command.contains("\n"), "one line per command")
        var buffer = channel.allocator.buffer(capacity: command.utf8.count + 1)
        buffer.writeString(command + "\n")
        try await channel.writeAndFlush(buffer)
        var output: [String] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let line = await nextLine(before: deadline) else { break }
            if line.hasPrefix("VMPULSE-END ") {
                return Reply(status: Int(line.dropFirst("VMPULSE-END ".count)) ?? -1, output: output.joined(separator: "\n"))
            }
            output.append(line)
        }
        throw TestBedError("the guest did not finish '\(command)' within \(timeout); output so far: \(output.suffix(5))")
    }

    /// Runs a command and fails unless it exits 0.
    @discardableResult
    public func check(_ command: String, timeout: Duration = .seconds(120)) async throws -> String {
        let reply = try await run(command, timeout: timeout)
        guard reply.status == 0 else {
            throw TestBedError("'\(command)' exited \(reply.status) in the guest: \(reply.output)")
        }
        return reply.output
    }

    /// The next line, polling the buffer (a test helper: simplicity over latency).
    private func nextLine(before deadline: ContinuousClock.Instant) async -> String? {
        while ContinuousClock.now < deadline {
            if let line = lines.pop() { return line }
            if lines.closed { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    public func close() async {
        try? await channel.close()
    }
}

/// Lines received and not yet read.
private final class LineBuffer: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var lines: [String] = []
    private var isClosed = false

    func push(_ line: String) { lock.withLock { lines.append(line) } }
    func pop() -> String? { lock.withLock { lines.isEmpty ? nil : lines.removeFirst() } }
    func close() { lock.withLock { isClosed = true } }
    var closed: Bool { lock.withLock { isClosed && lines.isEmpty } }
}

/// Turns the shell's byte stream into lines.
private final class LineCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let lines: LineBuffer
    private var pending = ""

    init(lines: LineBuffer) {
        self.lines = lines
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        pending += buffer.readString(length: buffer.readableBytes) ?? ""
        while let newline = pending.firstIndex(of: "\n") {
            var line = String(pending[..<newline])
            if line.hasSuffix("\r") { line.removeLast() }
            lines.push(line)
            pending = String(pending[pending.index(after: newline)...])
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        lines.close()
    }
}
