import Hypervisor
import NIOCore
import NIOPosix
import VMPulseCore

/// Guest and service links: a probe every interval; an answered probe is a pulse.
enum Probes {
    /// The machines of the VMs answering to `name` (its name or UUID) now.
    typealias Resolve = @Sendable (String) -> [String]

    /// The guest's agent answers `guest-ping` (through the backend; a VM that is not
    /// running, or two VMs with the name, is a failed probe).
    static func guest(vm: String, backend: any HypervisorBackend, resolve: Resolve) async throws(ProbeError) {
        let machines = resolve(vm)
        guard machines.count == 1, let machine = machines.first else {
            throw ProbeError(machines.isEmpty ? "no VM named \(vm) runs on this host" : "\(machines.count) VMs answer to \(vm); the link cannot tell them apart")
        }
        do throws(MachineError) {
            try await backend.pingGuest(machine: machine)
        } catch {
            throw ProbeError("guest-ping to \(vm): \(error)")
        }
    }

    /// A TCP connection to `host:port` opens within `timeout`; with `send`, the answer
    /// contains `expect` within it (reading at most 64 KiB).
    static func service(host: String, port: Int, send: String?, expect: String?, timeout: Double) async throws(ProbeError) {
        let outcome: Result<Void, ProbeError> = await withDeadline(.milliseconds(Int64(timeout * 1000))) {
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(.milliseconds(Int64(timeout * 1000)))
                    .connect(host: host, port: port) { channel in
                        channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                    }
                return try await channel.executeThenClose { inbound, outbound in
                    guard let send, let expect else { return .success(()) }
                    try await outbound.write(ByteBuffer(string: send))
                    var seen: [UInt8] = []
                    let wanted = Array(expect.utf8)
                    for try await chunk in inbound {
                        let from = max(0, seen.count - wanted.count + 1)  // only where the new bytes can complete it
                        seen += chunk.readableBytesView.prefix(max(0, 65_536 - seen.count))
                        if seen.count >= wanted.count, from <= seen.count - wanted.count, (from...(seen.count - wanted.count)).contains(where: { seen[$0..<$0 + wanted.count].elementsEqual(wanted) }) {
                            return .success(())
                        }
                        if seen.count >= 65_536 { break }
                    }
                    return .failure(ProbeError("\(host):\(port) answered without '\(expect.prefix(80))'"))
                }
            } catch {
                return .failure(ProbeError("\(host):\(port): \(error)"))
            }
        } fallback: {
            .failure(ProbeError("\(host):\(port) did not answer within \(timeout) s"))
        }
        try outcome.get()
    }
}

struct ProbeError: Error, Sendable, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
