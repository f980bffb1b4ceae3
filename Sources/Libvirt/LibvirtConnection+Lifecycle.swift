internal import CLibvirt

/// Starting, stopping and resetting domains (the test beds, and the backend's VM actions).
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

    /// `virDomainReset` (a hard reset, as the reset button).
    public func reset(uuid: String) throws(LibvirtError) {
        try withDomain(uuid, "virDomainReset") { dom throws(LibvirtError) in
            guard virDomainReset(dom, 0) == 0 else { throw LibvirtError.last("cannot reset domain \(uuid)") }
        }
    }

    /// `virDomainShutdownFlags(ACPI_POWER_BTN)`: the guest is asked to power off.
    public func powerButton(uuid: String) throws(LibvirtError) {
        try withDomain(uuid, "virDomainShutdownFlags") { dom throws(LibvirtError) in
            guard virDomainShutdownFlags(dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN.rawValue) == 0 else {
                throw LibvirtError.last("cannot press the power button of domain \(uuid)")
            }
        }
    }
}
