import VMPulseCore

/// What a VM is made of, as the engine's `VM.getConfInfo` and the `config` hash need it:
/// read from QEMU (QMP queries and its command line) or from libvirt's live XML. Every
/// field the backend could not learn is nil, never a guess.
public struct MachineDescription: Sendable, Equatable {
    /// The QEMU process.
    public var pid: Int32?
    /// Whether KVM acceleration is on (`query-kvm`; libvirt's `<domain type='kvm'>`).
    public var kvm: Bool?
    /// Whether the guest has ACPI (the machine's `acpi` property; libvirt's `<features><acpi/>`).
    public var acpi: Bool?
    /// The display (VNC or SPICE), when the VM has one.
    public var display: Display?
    /// Addresses of the clients connected to the display; nil when the backend cannot
    /// tell (libvirt lists them only to a monitor command, which would taint the domain).
    public var displayClients: [String]?
    /// The image in the first CD-ROM drive, when one is inserted.
    public var cdrom: String?
    /// The boot order (`-boot order=`, libvirt's `<boot dev=>`): QEMU's letters, c (disk),
    /// d (CD-ROM), n (network), a (floppy).
    public var boot: String?
    /// Every device and drive, as canonical text: what the `config` hash covers, so that
    /// a device added or removed (`device_add`, `device_del`, a changed medium) changes it.
    public var devices: [String] = []
    /// Drives whose last request failed, by drive name: `nospace` or `failed` (QEMU's
    /// `io-status`, kept while the VM is paused on the error). Not part of the `config` hash.
    public var diskErrors: [String: String] = [:]

    public struct Display: Sendable, Equatable {
        /// `vnc` or `spice`.
        public var type: String
        public var address: String?
        public var port: Int?
        public var securePort: Int?

        public init(type: String, address: String? = nil, port: Int? = nil, securePort: Int? = nil) {
            self.type = type
            self.address = address
            self.port = port
            self.securePort = securePort
        }
    }

    public init(pid: Int32? = nil, kvm: Bool? = nil, acpi: Bool? = nil, display: Display? = nil, displayClients: [String]? = nil,
                cdrom: String? = nil, boot: String? = nil, devices: [String] = []) {
        self.pid = pid
        self.kvm = kvm
        self.acpi = acpi
        self.display = display
        self.displayClients = displayClients
        self.cdrom = cdrom
        self.boot = boot
        self.devices = devices
    }
}
