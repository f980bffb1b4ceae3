internal import CLibvirt

/// Starting and stopping domains (the test beds and tools use these; the agent only watches).
extension LibvirtConnection {
    /// `virDomainCreateXML`: starts a transient domain from its XML, paused when asked.
    public func createTransient(xml: String, paused: Bool) throws(LibvirtError) -> LibvirtDomainInfo {
        try withConnection("virDomainCreateXML") { conn throws(LibvirtError) in
            let flags = paused ? VIR_DOMAIN_START_PAUSED.rawValue : 0
            guard let dom = virDomainCreateXML(conn, xml, flags) else {
                throw LibvirtError.last("cannot start a libvirt domain from XML")
            }
            defer { virDomainFree(dom) }
            return try Domain.info(dom, "virDomainCreateXML")
        }
    }

    /// `virDomainDestroy`: stops the domain at once (a transient one is then gone).
    public func destroy(uuid: String) throws(LibvirtError) {
        try withDomain(uuid, "virDomainDestroy") { dom throws(LibvirtError) in
            guard virDomainDestroy(dom) == 0 else { throw LibvirtError.last("cannot destroy domain \(uuid)") }
        }
    }
}
