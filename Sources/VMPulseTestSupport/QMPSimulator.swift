import Foundation
import Glibc
import NIOCore
import NIOPosix
import Synchronization
import VMPulseCore

/// A scripted fake peer, for scale runs only (`make bench-metrics`, 500 VMs: more QEMU
/// processes than this machine holds): QMP monitor sockets `sim-N.sock`, each answering
/// like one real paused guest. With `Replies.model`, every command is asked once of that
/// real guest's spare monitor and its reply replayed after that (`recorded()` gives them
/// all); with `Replies.recorded`, the replies come from such a recording, so that many
/// simulator processes can share one guest's answers (QEMU serves one client per monitor).
/// Only `query-name` and `query-uuid` answer per socket (`sim-N` and a UUID of its own).
/// A process's sockets all have its pid, so figures read from /proc (CPU, threads, open
/// files) are the simulator's, and the vCPU thread ids of the model's replies are not found.
public final class QMPSimulator: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channels: [any Channel]

    private init(group: MultiThreadedEventLoopGroup, channels: [any Channel], monitor: ModelMonitor) {
        self.group = group
        self.channels = channels
        self.monitor = monitor
    }

    public enum Replies: Sendable {
        /// The spare monitor (`Guest.controlSocket`) of a real paused guest.
        case model(String)
        /// Replies recorded by `recorded()`, keyed by command.
        case recorded([String: JSONValue])
    }

    /// Every reply asked of the model so far, keyed by command (for `Replies.recorded`).
    public func recorded() -> [String: JSONValue] { monitor.recorded() }

    private let monitor: ModelMonitor

    /// Serves the sockets `directory/sim-N.sock`, N from `first` to `first + count - 1`, until `stop`.
    public static func start(directory: String, first: Int = 0, count: Int, replies: Replies) async throws -> QMPSimulator {
        let model = try ModelMonitor(replies)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var channels: [any Channel] = []
        for i in first..<(first + count) {
            let name = "sim-\(i)", uuid = String(format: "5e000000-0000-4000-8000-%012x", i)
            channels.append(try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Monitor(name: name, uuid: uuid, model: model))
                    }
                }
                .bind(unixDomainSocketPath: "\(directory)/\(name).sock", cleanupExistingSocketFile: true).get())
        }
        return QMPSimulator(group: group, channels: channels, monitor: model)
    }

    /// Closes every socket (and the connections on them) and ends the simulator's thread.
    public func stop() async {
        for c in channels { try? await c.close() }
        try? await group.shutdownGracefully()
    }

    /// One simulated monitor connection.
    final class Monitor: ChannelInboundHandler, @unchecked Sendable {
        // @unchecked: used only on its channel's event loop.
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let name: String
        let uuid: String
        let model: ModelMonitor
        private var pending: [UInt8] = []

        init(name: String, uuid: String, model: ModelMonitor) {
            self.name = name
            self.uuid = uuid
            self.model = model
        }

        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: model.greeting + "\n")), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            pending += unwrapInboundIn(data).readableBytesView
            while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<end])
                pending.removeSubrange(...end)
                guard case .object(var request) = try? JSONParser.parse(line) else { continue }
                let id = request.removeValue(forKey: "id")
                var reply: [String: JSONValue]
                switch request["execute"]?.stringValue {
                case "qmp_capabilities": reply = ["return": .object([:])]
                case "query-name": reply = ["return": ["name": .string(name)]]
                case "query-uuid": reply = ["return": ["UUID": .string(uuid)]]
                default: reply = model.reply(to: .object(request))
                }
                if let id { reply["id"] = id }
                context.write(wrapOutboundOut(ByteBuffer(string: JSONText.serialize(.object(reply)) + "\n")), promise: nil)
            }
            context.flush()
        }
    }

    /// The real guest's spare monitor, asked once per distinct command. A first ask blocks
    /// the simulator's event loop for one round trip: the replies are all cached within the
    /// agent's first full pass, before anything is measured.
    final class ModelMonitor: Sendable {
        let greeting: String
        private let fd: Int32?
        private let cache = Mutex<[String: [String: JSONValue]]>([:])
        static let greetingKey = "greeting"

        convenience init(_ replies: Replies) throws {
            switch replies {
            case .model(let path): try self.init(path: path)
            case .recorded(let table): self.init(recorded: table)
            }
        }

        init(recorded table: [String: JSONValue]) {
            fd = nil
            greeting = table[Self.greetingKey].map { JSONText.serialize($0) } ?? #"{"QMP": {"version": {}, "capabilities": []}}"#
            cache.withLock { c in for (k, v) in table where k != Self.greetingKey { if let o = v.objectValue { c[k] = o } } }
        }

        deinit {
            if let fd { close(fd) }
        }

        func recorded() -> [String: JSONValue] {
            var out = cache.withLock { $0.mapValues { JSONValue.object($0) } }
            out[Self.greetingKey] = (try? JSONParser.parse(Array(greeting.utf8))) ?? .null
            return out
        }

        init(path: String) throws {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
            }
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard rc == 0 else { throw TestBedError("cannot reach the model monitor \(path): \(String(cString: strerror(errno)))") }
            var tv = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            self.fd = fd
            greeting = try Self.line(fd)
            _ = try Self.ask(fd, #"{"execute": "qmp_capabilities"}"#)
        }

        func reply(to request: JSONValue) -> [String: JSONValue] {
            let key = JSONText.serialize(request)
            return cache.withLock { cache in
                if let known = cache[key] { return known }
                guard let fd else { return ["error": ["class": "CommandNotFound", "desc": .string("the recording has no reply to \(key)")]] }
                let answer = (try? Self.ask(fd, key)).flatMap { try? JSONParser.parse(Array($0.utf8)) }?.objectValue
                    ?? ["error": ["class": "GenericError", "desc": "the model monitor did not answer"]]
                cache[key] = answer
                return answer
            }
        }

        /// Sends one command and returns its reply's line (events are skipped).
        static func ask(_ fd: Int32, _ command: String) throws -> String {
            let bytes = Array((command + "\n").utf8)
            guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
                throw TestBedError("the model monitor closed")
            }
            while true {
                let reply = try line(fd)
                if (try? JSONParser.parse(Array(reply.utf8)))?["event"] == nil { return reply }
            }
        }

        static func line(_ fd: Int32) throws -> String {
            var out: [UInt8] = []
            var byte: UInt8 = 0
            while true {
                guard recv(fd, &byte, 1, 0) == 1 else { throw TestBedError("the model monitor closed or was silent") }
                if byte == UInt8(ascii: "\n") { return String(decoding: out, as: UTF8.self) }
                out.append(byte)
            }
        }
    }
}
