/// Which ledger key each live VM's usage is filed under, so that two live VMs never
/// share one.
///
/// A VM is keyed by its UUID, or by `name:NAME` when QEMU runs without one (its
/// default UUID is all zeros). Two running QEMUs may claim the same UUID (a cloned VM)
/// or the same name without a UUID; QEMU allows both. Then each of them is filed under
/// its claim qualified by its monitor socket's name (`UUID/web1.sock`),
/// which is unique on the host, and the conflict is reported until one of them is gone. Since accounting
/// follows each QEMU process's counters whatever the key (see `Accounting`), moving a VM
/// between keys neither loses nor repeats usage.
public struct LedgerKeys: Sendable {
    /// A claim that more than one live VM makes.
    public struct Conflict: Sendable, Equatable, CustomStringConvertible {
        /// The UUID, or `name:NAME`.
        public var claim: String
        /// The monitor sockets of the VMs that make it, sorted.
        public var sockets: [String]

        public init(claim: String, sockets: [String]) {
            self.claim = claim
            self.sockets = sockets
        }

        public var description: String {
            let what = claim.hasPrefix("name:") ? "the name \(claim.dropFirst(5)) and no UUID" : "the UUID \(claim)"
            return "\(sockets.count) running VMs have \(what) (\(sockets.joined(separator: ", "))); "
                + "each is accounted apart, under its claim and its socket's name (give each VM a UUID of its own)"
        }
    }

    private var claims: [String: String] = [:]  // socket -> claim
    /// claim -> the sockets that make it: `key(for:)` and `conflict(for:)` are asked for every
    /// VM on every pass, and a scan of every claim each time cost the agent a third of its
    /// CPU at 500 VMs (perf, `make bench-metrics`).
    private var holders: [String: Set<String>] = [:]

    public init() {}

    /// The claim of a VM: its UUID, or `name:NAME` without one.
    /// In a name, `%` and `/` are written `%25` and `%2F`: `/` separates the socket's
    /// name in a qualified key, and a VM named `web/b.sock` must not get the key of the
    /// VM `web` on `b.sock`.
    public static func claim(name: String, uuid: String) -> String {
        guard uuid.isEmpty || uuid == "00000000-0000-0000-0000-000000000000" else { return uuid }
        return "name:" + name.replacingPercentAndSlash()
    }

    /// Records what the VM behind `socket` claims (nil while its identity is not known);
    /// returns whether that changed anything.
    @discardableResult
    public mutating func update(socket: String, claim: String?) -> Bool {
        let old = claims[socket]
        guard old != claim else { return false }
        if let old { release(socket, from: old) }
        claims[socket] = claim
        if let claim { holders[claim, default: []].insert(socket) }
        return true
    }

    @discardableResult
    public mutating func remove(socket: String) -> Bool {
        guard let old = claims.removeValue(forKey: socket) else { return false }
        release(socket, from: old)
        return true
    }

    private mutating func release(_ socket: String, from claim: String) {
        holders[claim]?.remove(socket)
        if holders[claim]?.isEmpty == true { holders.removeValue(forKey: claim) }
    }

    /// The key to file the VM's usage under; nil while its identity is not known.
    public func key(for socket: String) -> String? {
        guard let claim = claims[socket] else { return nil }
        return (holders[claim]?.count ?? 0) > 1 ? claim + "/" + Self.socketName(socket) : claim
    }

    /// Every claim more than one live VM makes, sorted by claim.
    public var conflicts: [Conflict] {
        holders.filter { $0.value.count > 1 }
            .map { Conflict(claim: $0.key, sockets: $0.value.sorted()) }
            .sorted { $0.claim < $1.claim }
    }

    /// The conflict a VM is part of, if any.
    public func conflict(for socket: String) -> Conflict? {
        guard let claim = claims[socket], let sockets = holders[claim], sockets.count > 1 else { return nil }
        return Conflict(claim: claim, sockets: sockets.sorted())
    }

    /// The socket's file name: unique in the socket directory.
    static func socketName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}

extension String {
    func replacingPercentAndSlash() -> String {
        guard contains("%") || contains("/") else { return self }
        var out = ""
        for c in self {
            switch c {
            case "%": out += "%25"
            case "/": out += "%2F"
            default: out.append(c)
            }
        }
        return out
    }
}
