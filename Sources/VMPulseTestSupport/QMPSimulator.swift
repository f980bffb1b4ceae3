import Foundation
import Glibc
import NIOCore
import NIOPosix
import Synchronization
import VMPulseCore

/// A scripted fake peer, for scale runs only (`make bench-metrics`, 500 VMs: more QEMU
/// processes than this machine holds): `count` QMP monitor sockets served by one process,
/// each answering like one real paused guest. Every command is asked once of that real
/// guest's spare monitor (`model`), and the reply is replayed to every socket after that;
/// only `query-name` and `query-uuid` answer per socket (`sim-N` and a UUID of its own).
/// Every socket has the simulator's pid, so figures read from /proc (CPU, threads) are the
/// simulator's, and the vCPU thread ids of the model's replies are not found there.
public enum QMPSimulator {
    /// Serves the sockets `directory/sim-N.sock` until the process is killed.
    public static func serve(directory: String, count: Int, modelSocket: String) async throws -> Never {
        let model = try ModelMonitor(path: modelSocket)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        for i in 0..<count {
            let name = "sim-\(i)", uuid = String(format: "5e000000-0000-4000-8000-%012x", i)
            _ = try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Monitor(name: name, uuid: uuid, model: model))
                    }
                }
                .bind(unixDomainSocketPath: "\(directory)/\(name).sock", cleanupExistingSocketFile: true).get()
        }
        FileHandle.standardOutput.write(Data("simulating \(count) monitors in \(directory)\n".utf8))
        while true { try await Task.sleep(for: .seconds(3600)) }
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
        private let fd: Int32
        private let cache = Mutex<[String: [String: JSONValue]]>([:])

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
