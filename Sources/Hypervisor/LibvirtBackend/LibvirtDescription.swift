import FoundationXML

/// `describe` on the libvirt backend: the domain's live XML (`virDomainGetXMLDesc`), read
/// with FoundationXML (libxml2) rather than by hand.
enum LibvirtDescription {
    static func parse(xml: String) throws(MachineError) -> MachineDescription {
        let document: XMLDocument
        do { document = try XMLDocument(xmlString: xml) } catch {
            throw MachineError(.failed, "libvirt gave a domain XML that does not parse: \(error)")
        }
        guard let domain = document.rootElement(), domain.name == "domain" else {
            throw MachineError(.failed, "libvirt gave an XML whose root is not <domain>")
        }
        var d = MachineDescription()
        d.kvm = domain.attribute(forName: "type")?.stringValue.map { $0 == "kvm" }
        d.acpi = !(domain.elements(forName: "features").first?.elements(forName: "acpi").isEmpty ?? true)
        let devices = domain.elements(forName: "devices").first
        if let graphics = devices?.elements(forName: "graphics").first, let type = graphics.attribute(forName: "type")?.stringValue {
            let address = graphics.attribute(forName: "listen")?.stringValue
                ?? graphics.elements(forName: "listen").first?.attribute(forName: "address")?.stringValue
            d.display = MachineDescription.Display(
                type: type, address: address, port: port(graphics.attribute(forName: "port")?.stringValue),
                securePort: port(graphics.attribute(forName: "tlsPort")?.stringValue))
        }
        for disk in devices?.elements(forName: "disk") ?? [] where disk.attribute(forName: "device")?.stringValue == "cdrom" {
            let source = disk.elements(forName: "source").first
            if let file = source?.attribute(forName: "file")?.stringValue ?? source?.attribute(forName: "dev")?.stringValue {
                d.cdrom = file
                break
            }
        }
        let letters = ["hd": "c", "cdrom": "d", "network": "n", "fd": "a"]
        let order = (domain.elements(forName: "os").first?.elements(forName: "boot") ?? [])
            .compactMap { $0.attribute(forName: "dev")?.stringValue.flatMap { letters[$0] } }.joined()
        d.boot = order.isEmpty ? nil : order
        d.devices = (devices?.children ?? []).compactMap { node in
            guard node.kind == .element else { return nil }
            return node.xmlString(options: [.nodeCompactEmptyElement])
        }.sorted()
        return d
    }

    static func port(_ text: String?) -> Int? {
        guard let text, let n = Int(text), (1...65535).contains(n) else { return nil }
        return n
    }
}
