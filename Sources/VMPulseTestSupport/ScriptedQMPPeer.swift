import Foundation
import NIOCore
import NIOPosix
import VMPulseCore

/// A scripted fake QMP peer, for the bad-input tests that a real QEMU cannot
/// produce (garbage, truncated lines, unknown ids, huge lines, a close mid-reply);
/// with no greeting, a fake guest agent (a lying or silent qemu-ga).
/// It is not QEMU and is never used where a real guest can run.
public final class ScriptedQMPPeer: Sendable {
    /// One thing the peer does.
    public enum Step: Sendable {
        /// A line (a newline is added).
        case send(String)
        /// Bytes exactly as given (no newline).
        case sendRaw(String)
        /// `{"return": value, "id": <the command's id>}`.
        case reply(JSONValue)
        /// A reply carrying another id than the command's.
        case replyWithID(JSONValue, id: JSONValue)
        /// `{"error": {"class", "desc"}, "id": <the command's id>}`.
        case error(errorClass: String, description: String)
        /// `count` bytes of `filler` in 64 KiB writes, each after the previous one was taken
        /// by the kernel, then a newline; stops when the client stops reading.
        case flood(count: Int)
        case sleep(Duration)
        case close
    }

    public static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "scripted-peer"}, "capabilities": ["oob"]}}"#

    public let path: String
    private let channel: any Channel
    private let counters: PeerCounters

    /// Bytes the client accepted from `.flood` steps so far.
    public var floodBytesAccepted: Int { counters.flooded }
    /// Commands received, by name, in order.
    public var commandsReceived: [String] { counters.commands }

    /// Starts listening on `path`.
    /// - Parameters:
    ///   - onConnect: what to do when a client connects (the greeting by default).
    ///   - onCommand: what to do for each command; the default answers `qmp_capabilities` with `{}`.
    public init(
        path: String, onConnect: [Step] = [.send(ScriptedQMPPeer.greeting)],
        onCommand: @escaping @Sendable (_ command: String, _ arguments: JSONValue?) -> [Step]
    ) async throws {
        self.path = path
        let counters = PeerCounters()
        self.counters = counters
        unlink(path)
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(
                        PeerHandler(onConnect: onConnect, onCommand: onCommand, counters: counters))
                }
            }
            .bind(unixDomainSocketPath: path).get()
    }

    /// A peer that behaves like a healthy QEMU for capabilities and answers the rest with `respond`.
    public static func answering(
        path: String, respond: @escaping @Sendable (_ command: String, _ arguments: JSONValue?) -> [Step]
    ) async throws -> ScriptedQMPPeer {
        try await ScriptedQMPPeer(path: path, onConnect: [.send(greeting)]) { command, arguments in
            command == "qmp_capabilities" ? [.reply([:])] : respond(command, arguments)
        }
    }

    public func stop() async {
        try? await channel.close()
        unlink(path)
    }
}

private final class PeerCounters: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var floodedBytes = 0
    private var received: [String] = []
    var flooded: Int { lock.withLock { floodedBytes } }
    var commands: [String] { lock.withLock { received } }
    func addFlooded(_ n: Int) { lock.withLock { floodedBytes += n } }
    func addCommand(_ c: String) { lock.withLock { received.append(c) } }
}

private final class PeerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let onConnect: [ScriptedQMPPeer.Step]
    private let onCommand: @Sendable (String, JSONValue?) -> [ScriptedQMPPeer.Step]
    private let counters: PeerCounters
    private var pending: [UInt8] = []

    init(onConnect: [ScriptedQMPPeer.Step], onCommand: @escaping @Sendable (String, JSONValue?) -> [ScriptedQMPPeer.Step], counters: PeerCounters) {
        self.onConnect = onConnect
        self.onCommand = onCommand
        self.counters = counters
    }

    func channelActive(context: ChannelHandlerContext) {
        perform(onConnect[...], id: nil, context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        pending.append(contentsOf: buffer.readableBytesView)
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            // A guest agent's client may send 0xFF to reset the parser (guest-sync-delimited).
            let line = Array(pending[..<newline].drop { $0 == 0xFF })
            pending.removeSubrange(...newline)
            guard let message = try? JSONParser.parse(line), let command = message["execute"]?.stringValue else { continue }
            counters.addCommand(command)
            perform(onCommand(command, message["arguments"])[...], id: message["id"], context: context)
        }
    }

    private func write(_ text: String, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func perform(_ steps: ArraySlice<ScriptedQMPPeer.Step>, id: JSONValue?, context: ChannelHandlerContext) {
        var rest = steps
        while let step = rest.popFirst() {
            switch step {
            case .send(let line): write(line + "\n", context: context)
            case .sendRaw(let text): write(text, context: context)
            case .reply(let value):
                write(JSONText.serialize(["return": value, "id": id ?? .null]) + "\n", context: context)
            case .replyWithID(let value, let other):
                write(JSONText.serialize(["return": value, "id": other]) + "\n", context: context)
            case .error(let errorClass, let description):
                let error: JSONValue = ["class": .string(errorClass), "desc": .string(description)]
                write(JSONText.serialize(["error": error, "id": id ?? .null]) + "\n", context: context)
            case .flood(let count):
                flood(remaining: count, then: rest, id: id, context: context)
                return
            case .sleep(let duration):
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let remaining = rest
                context.eventLoop.scheduleTask(in: .nanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)) {
                    bound.value.0.perform(remaining, id: id, context: bound.value.1)
                }
                return
            case .close:
                context.close(promise: nil)
                return
            }
        }
    }

    private func flood(remaining: Int, then rest: ArraySlice<ScriptedQMPPeer.Step>, id: JSONValue?, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        guard remaining > 0 else {
            write("\n", context: context)
            perform(rest, id: id, context: context)
            return
        }
        let size = min(remaining, 65_536)
        var buffer = context.channel.allocator.buffer(capacity: size)
        buffer.writeRepeatingByte(UInt8(ascii: "x"), count: size)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let counters = self.counters
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { result in
            guard case .success = result else { return }
            counters.addFlooded(size)
            bound.value.0.flood(remaining: remaining - size, then: rest, id: id, context: bound.value.1)
        }
    }
}
