internal import CLibvirt
import Glibc

/// One interface as the guest agent reports it through libvirt.
public struct LibvirtGuestInterface: Sendable, Equatable {
    public var name: String
    public var hardwareAddress: String?
    /// (`ipv4` or `ipv6`, address, prefix length).
    public var addresses: [(type: String, address: String, prefix: Int)]

    public static func == (a: Self, b: Self) -> Bool {
        a.name == b.name && a.hardwareAddress == b.hardwareAddress
            && a.addresses.elementsEqual(b.addresses) { $0.type == $1.type && $0.address == $1.address && $0.prefix == $1.prefix }
    }
}

/// The guest agent's answers through libvirt (which talks to qemu-ga over the domain's
/// `org.qemu.guest_agent.0` channel itself). Each fails when the domain has no agent
/// channel or the agent does not answer within libvirt's agent timeout.
extension LibvirtConnection {
    /// `virDomainGetGuestInfo` with every type libvirt knows (users, os, hostname, filesystems...),
    /// as typed parameters (`os.kernel-release`, `fs.0.mountpoint`, ...).
    ///
    /// First it sets the domain's agent response timeout to `agentTimeout` seconds: libvirt's
    /// default is to wait for the agent for ever, so a guest whose qemu-ga stopped would hold
    /// a call thread (and the domain's agent job) until the guest moved again. The setting
    /// stays with the domain, so the two calls below are bounded by it too.
    public func guestInfo(uuid: String, agentTimeout: Int32 = 5) throws(LibvirtError) -> [LibvirtParam] {
        try withDomain(uuid, "virDomainGetGuestInfo") { dom throws(LibvirtError) in
            guard virDomainAgentSetResponseTimeout(dom, agentTimeout, 0) == 0 else {
                throw LibvirtError.last("cannot bound the guest agent's answers of domain \(uuid)")
            }
            var params: UnsafeMutablePointer<virTypedParameter>?
            var count: Int32 = 0
            guard virDomainGetGuestInfo(dom, 0, &params, &count, 0) == 0 else {
                throw LibvirtError.last("cannot read the guest agent's information of domain \(uuid)")
            }
            defer { virTypedParamsFree(params, count) }
            return TypedParams.read(params, count: count)
        }
    }

    /// `virDomainInterfaceAddresses` from the guest agent.
    public func guestInterfaces(uuid: String) throws(LibvirtError) -> [LibvirtGuestInterface] {
        try withDomain(uuid, "virDomainInterfaceAddresses") { dom throws(LibvirtError) in
            var list: UnsafeMutablePointer<virDomainInterfacePtr?>?
            let count = virDomainInterfaceAddresses(dom, &list, UInt32(VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT.rawValue), 0)
            guard count >= 0 else { throw LibvirtError.last("cannot read the guest agent's interfaces of domain \(uuid)") }
            defer {
                for i in 0..<Int(count) { virDomainInterfaceFree(list?[i]) }
                free(list)
            }
            var result: [LibvirtGuestInterface] = []
            for i in 0..<Int(count) {
                guard let iface = list?[i]?.pointee, let name = iface.name else { continue }
                var addresses: [(type: String, address: String, prefix: Int)] = []
                for j in 0..<Int(iface.naddrs) {
                    guard let entry = iface.addrs?[j], let addr = entry.addr else { continue }
                    let type = entry.type == Int32(VIR_IP_ADDR_TYPE_IPV6.rawValue) ? "ipv6" : "ipv4"
                    addresses.append((type, String(cString: addr), Int(entry.prefix)))
                }
                result.append(LibvirtGuestInterface(name: String(cString: name), hardwareAddress: iface.hwaddr.map { String(cString: $0) },
                                                    addresses: addresses))
            }
            return result
        }
    }

    /// `virDomainGetTime`: the guest's clock, as its agent reads it (seconds, nanoseconds).
    public func guestTime(uuid: String) throws(LibvirtError) -> (seconds: Int64, nanoseconds: UInt32) {
        try withDomain(uuid, "virDomainGetTime") { dom throws(LibvirtError) in
            var seconds: Int64 = 0
            var nanoseconds: UInt32 = 0
            guard virDomainGetTime(dom, &seconds, &nanoseconds, 0) == 0 else {
                throw LibvirtError.last("cannot read the guest's clock of domain \(uuid)")
            }
            return (seconds, nanoseconds)
        }
    }
}
