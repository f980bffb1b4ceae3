import VMPulseCore

/// What a guest reports of itself through its guest agent (qemu-ga). Every field the
/// agent did not give (an older agent, a command the guest refused) is nil, and so is
/// the whole value when the guest has no agent or it does not answer.
public struct GuestInfo: Sendable, Equatable {
    public struct Interface: Sendable, Equatable {
        public var name: String
        public var hardwareAddress: String?
        public var addresses: [Address]

        public init(name: String, hardwareAddress: String? = nil, addresses: [Address] = []) {
            self.name = name
            self.hardwareAddress = hardwareAddress
            self.addresses = addresses
        }
    }

    public struct Address: Sendable, Equatable {
        /// `ipv4` or `ipv6`.
        public var type: String
        public var address: String
        public var prefix: Int?

        public init(type: String, address: String, prefix: Int? = nil) {
            self.type = type
            self.address = address
            self.prefix = prefix
        }
    }

    public struct Filesystem: Sendable, Equatable {
        public var mountpoint: String
        public var type: String
        public var totalBytes: UInt64?
        public var usedBytes: UInt64?

        public init(mountpoint: String, type: String, totalBytes: UInt64? = nil, usedBytes: UInt64? = nil) {
            self.mountpoint = mountpoint
            self.type = type
            self.totalBytes = totalBytes
            self.usedBytes = usedBytes
        }
    }

    public struct User: Sendable, Equatable {
        public var name: String
        /// Unix seconds of the login.
        public var loginTime: Double?

        public init(name: String, loginTime: Double? = nil) {
            self.name = name
            self.loginTime = loginTime
        }
    }

    /// The guest agent's version (`guest-info`).
    public var agentVersion: String?
    /// `uname -r` and `uname -v` in the guest, and its OS's pretty name (`guest-get-osinfo`).
    public var kernelRelease: String?
    public var kernelVersion: String?
    public var osName: String?
    public var hostname: String?
    public var interfaces: [Interface]?
    public var filesystems: [Filesystem]?
    public var users: [User]?
    /// The guest's clock minus the host's, in whole seconds (`guest-get-time`).
    public var timeOffset: Int64?

    public init() {}
}

/// Reads a guest agent's replies into `GuestInfo`, checking each: a field of the wrong
/// type, an absurd count or an overlong string leaves that field out.
public enum GuestInfoReader {
    static let maxItems = 256
    static let maxText = 4096

    public static func text(_ value: JSONValue?) -> String? {
        guard let s = value?.stringValue, s.utf8.count <= maxText else { return nil }
        return s
    }

    public static func interfaces(_ reply: JSONValue) -> [GuestInfo.Interface]? {
        guard let items = reply.arrayValue, items.count <= maxItems else { return nil }
        return items.compactMap { item in
            guard let name = text(item["name"]) else { return nil }
            let addresses = (item["ip-addresses"]?.arrayValue ?? []).prefix(maxItems).compactMap { a -> GuestInfo.Address? in
                guard let type = text(a["ip-address-type"]), type == "ipv4" || type == "ipv6", let address = text(a["ip-address"]) else { return nil }
                let prefix = a["prefix"]?.int64Value.flatMap { (0...128).contains($0) ? Int($0) : nil }
                return GuestInfo.Address(type: type, address: address, prefix: prefix)
            }
            return GuestInfo.Interface(name: name, hardwareAddress: text(item["hardware-address"]), addresses: Array(addresses))
        }
    }

    public static func filesystems(_ reply: JSONValue) -> [GuestInfo.Filesystem]? {
        guard let items = reply.arrayValue, items.count <= maxItems else { return nil }
        return items.compactMap { item in
            guard let mountpoint = text(item["mountpoint"]), let type = text(item["type"]) else { return nil }
            return GuestInfo.Filesystem(mountpoint: mountpoint, type: type, totalBytes: item["total-bytes"]?.uint64Value,
                                        usedBytes: item["used-bytes"]?.uint64Value)
        }
    }

    public static func users(_ reply: JSONValue) -> [GuestInfo.User]? {
        guard let items = reply.arrayValue, items.count <= maxItems else { return nil }
        return items.compactMap { item in
            guard let name = text(item["user"]) else { return nil }
            let login = item["login-time"]?.doubleValue.flatMap { $0.isFinite && $0 >= 0 ? $0 : nil }
            return GuestInfo.User(name: name, loginTime: login)
        }
    }

    /// Whole seconds from the host's clock (`hostNow`, Unix seconds) to the guest's
    /// (`guest-get-time`: nanoseconds since the epoch); nil for what is not a time.
    public static func timeOffset(_ reply: JSONValue, hostNow: Double) -> Int64? {
        guard let ns = reply.int64Value, ns >= 0 else { return nil }
        let offset = (Double(ns) / 1e9 - hostNow).rounded()
        guard offset.isFinite, abs(offset) < 1e12 else { return nil }
        return Int64(offset)
    }
}
