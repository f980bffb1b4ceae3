/// What vmpulse reads from a QEMU process's command line (/proc/PID/cmdline),
/// so that a stats pass need not ask the monitor for what cannot change while
/// QEMU runs: its name, its UUID, and the ids of its devices.
public struct QEMUArguments: Sendable, Equatable {
    /// `-name guest=NAME` or `-name NAME`.
    public var name: String?
    /// `-uuid UUID`.
    public var uuid: String?
    /// `-device` options as (driver, id), in order; `id` is nil for an anonymous device.
    public var devices: [Device] = []
    /// The most vCPUs the VM can have, when `-smp` makes it plain (`-smp N` or `maxcpus=`).
    public var maxVCPUs: Int?
    /// The boot order (`-boot order=cd`, `-boot cd`), as QEMU's letters.
    public var bootOrder: String?
    /// `-no-acpi` was given (QEMU before 9 had it; later ones take `-machine acpi=off`).
    public var noACPI = false
    /// The VM's memory in bytes, when `-m` gives a fixed size (no `maxmem` or `slots`: no hotplug).
    public var fixedMemoryBytes: UInt64?

    public struct Device: Sendable, Equatable {
        public var driver: String
        public var id: String?

        public init(driver: String, id: String?) {
            self.driver = driver
            self.id = id
        }
    }

    public init(name: String? = nil, uuid: String? = nil, devices: [Device] = []) {
        self.name = name
        self.uuid = uuid
        self.devices = devices
    }

    /// Parses the NUL-separated bytes of /proc/PID/cmdline.
    public init(cmdline: some Collection<UInt8>) {
        self.init(arguments: cmdline.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) })
    }

    /// Parses the NUL-separated text of /proc/PID/cmdline.
    public init(cmdline: String) {
        self.init(cmdline: Array(cmdline.utf8))
    }

    /// Parses argv. Options QEMU accepts with one or two dashes are both understood;
    /// `-device` in QEMU's key=value form and in its JSON form (what libvirt writes).
    public init(arguments: [String]) {
        var i = 1
        while i < arguments.count {
            let option = arguments[i].hasPrefix("--") ? String(arguments[i].dropFirst()) : arguments[i]
            let value = i + 1 < arguments.count ? arguments[i + 1] : nil
            switch option {
            case "-name":
                if let value { name = Self.impliedOrKey(value, implied: "guest") }
                i += 2
            case "-uuid":
                uuid = value
                i += 2
            case "-device":
                if let value, let device = Self.device(value) { devices.append(device) }
                i += 2
            case "-smp":
                if let value { maxVCPUs = Self.maxVCPUs(value) }
                i += 2
            case "-m":
                if let value { fixedMemoryBytes = Self.fixedMemory(value) }
                i += 2
            case "-boot":
                if let value { bootOrder = Self.impliedOrKey(value, implied: "order").flatMap { $0.isEmpty ? nil : $0 } }
                i += 2
            case "-no-acpi":
                noACPI = true
                i += 1
            default:
                i += 1
            }
        }
    }

    /// The QOM path of the first device whose driver starts with `prefix`, when it has an id.
    public func peripheralPath(driverPrefix prefix: String) -> String? {
        guard let device = devices.first(where: { $0.driver.hasPrefix(prefix) }), let id = device.id else { return nil }
        return "/machine/peripheral/" + id
    }

    static func device(_ value: String) -> Device? {
        if value.hasPrefix("{") {
            guard let json = try? JSONParser.parse(Array(value.utf8)), let driver = json["driver"]?.stringValue else { return nil }
            return Device(driver: driver, id: json["id"]?.stringValue)
        }
        let options = splitOptions(value)
        guard let first = options.first else { return nil }
        let driver = first.key == nil ? first.value : options.first { $0.key == "driver" }?.value
        guard let driver else { return nil }
        return Device(driver: driver, id: options.first { $0.key == "id" }?.value)
    }

    /// `-smp 4`, `-smp cpus=2,maxcpus=4`, `-smp 2,maxcpus=8,sockets=...`: maxcpus when given,
    /// else the count when nothing else is given; a topology without maxcpus is left to QMP.
    static func maxVCPUs(_ value: String) -> Int? {
        let options = splitOptions(value)
        if let max = options.first(where: { $0.key == "maxcpus" }) { return Int(max.value) }
        guard options.count == 1, let only = options.first, only.key == nil || only.key == "cpus" else { return nil }
        return Int(only.value)
    }

    /// `-m 128`, `-m 1G`, `-m size=131072k`: the size in bytes (MiB when no suffix), nil when
    /// memory can be hot-plugged (`maxmem`, `slots`) or the text is not understood.
    static func fixedMemory(_ value: String) -> UInt64? {
        let options = splitOptions(value)
        guard !options.contains(where: { $0.key == "maxmem" || $0.key == "slots" }) else { return nil }
        guard let size = options.first(where: { $0.key == nil || $0.key == "size" })?.value, let last = size.last else { return nil }
        let units: [Character: UInt64] = ["k": 1 << 10, "K": 1 << 10, "m": 1 << 20, "M": 1 << 20, "g": 1 << 30, "G": 1 << 30, "t": 1 << 40, "T": 1 << 40]
        let (digits, unit) = last.isNumber ? (Substring(size), UInt64(1 << 20)) : (size.dropLast(), units[last] ?? 0)
        guard unit > 0, let number = UInt64(digits), number.multipliedReportingOverflow(by: unit).overflow == false else { return nil }
        return number * unit
    }

    /// The value of `implied` in a QEMU option string whose first item may omit its key.
    static func impliedOrKey(_ value: String, implied: String) -> String? {
        let options = splitOptions(value)
        if let first = options.first, first.key == nil { return first.value }
        return options.first { $0.key == implied }?.value
    }

    /// Splits `a,b=c,d=e,,f` into items (`,,` is a literal comma, as QEMU's option parser has it).
    static func splitOptions(_ text: String) -> [(key: String?, value: String)] {
        var items: [String] = []
        var current = ""
        var chars = Array(text)[...]
        while let c = chars.popFirst() {
            if c == "," {
                if chars.first == "," {
                    current.append(",")
                    chars.removeFirst()
                } else {
                    items.append(current)
                    current = ""
                }
            } else {
                current.append(c)
            }
        }
        items.append(current)
        return items.map { item in
            guard let eq = item.firstIndex(of: "=") else { return (nil, item) }
            return (String(item[..<eq]), String(item[item.index(after: eq)...]))
        }
    }
}
