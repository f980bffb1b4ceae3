import Foundation
import Glibc

/// Two network namespaces joined by a veth pair, made for one test and removed after:
/// `a` holds `10.X.Y.1/24` on `vethA`, `b` holds `.2` on `vethB`. The link can be cut
/// (`ip link set down` on a's side) and restored. Needs root and `ip` (iproute2).
public final class NetnsPair: @unchecked Sendable {
    // @unchecked: immutable after init but for `removed`, touched by the test's one task.
    public let a: String
    public let b: String
    public let vethA: String
    public let vethB: String
    public let addressA: String
    public let addressB: String
    private var removed = false

    public init() throws {
        let tag = String(UInt32.random(in: 0...0xFFFFF), radix: 16)
        a = "vmpA\(tag)"
        b = "vmpB\(tag)"
        vethA = "vpa\(tag)"
        vethB = "vpb\(tag)"
        let net = "10.\(Int.random(in: 200...250)).\(Int.random(in: 1...250))"
        addressA = net + ".1"
        addressB = net + ".2"
        do {
            try Self.ip(["netns", "add", a])
            try Self.ip(["netns", "add", b])
            try Self.ip(["link", "add", vethA, "type", "veth", "peer", "name", vethB])
            try Self.ip(["link", "set", vethA, "netns", a])
            try Self.ip(["link", "set", vethB, "netns", b])
            try Self.ip(["-n", a, "addr", "add", addressA + "/24", "dev", vethA])
            try Self.ip(["-n", b, "addr", "add", addressB + "/24", "dev", vethB])
            for (ns, dev) in [(a, vethA), (b, vethB)] {
                try Self.ip(["-n", ns, "link", "set", dev, "up"])
                try Self.ip(["-n", ns, "link", "set", "lo", "up"])
            }
        } catch {
            remove()
            throw error
        }
    }

    /// `ip netns exec NS`, to start a program inside one of them.
    public func exec(_ ns: String) -> [String] { [Self.ipPath, "netns", "exec", ns] }

    public func cut() throws { try Self.ip(["-n", a, "link", "set", vethA, "down"]) }
    public func restore() throws { try Self.ip(["-n", a, "link", "set", vethA, "up"]) }

    /// Removes both namespaces (and with them the veth pair).
    public func remove() {
        guard !removed else { return }
        removed = true
        _ = try? Spawn.run(Self.ipPath, ["netns", "del", a])
        _ = try? Spawn.run(Self.ipPath, ["netns", "del", b])
    }

    deinit { remove() }

    static let ipPath: String = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { (p: String) in access(p, X_OK) == 0 } ?? "ip"

    static func ip(_ arguments: [String]) throws {
        let out = try Spawn.capture(ipPath, arguments)
        guard out.status == 0 else { throw TestBedError("ip \(arguments.joined(separator: " ")) failed (\(out.status)): \(out.stderr)") }
    }
}
