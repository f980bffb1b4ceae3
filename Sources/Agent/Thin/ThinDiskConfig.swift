import Glibc
import Yams

/// One thin disk the agent watches and extends, from `thin_disks:` in the configuration.
public struct ThinDiskConfig: Sendable, Equatable {
    public enum Backend: Sendable, Equatable {
        /// A loop device over a sparse file: grow the file, refresh the device's capacity.
        case loop(file: String)
        /// An external program (lvextend, a storage array): the request as `name=value`
        /// lines on standard input, success by exit code 0, bounded by `timeout` seconds.
        case command(program: String, arguments: [String], timeout: Double)
    }

    /// The VM, by name or UUID.
    public var vm: String
    /// The drive (its id, as `block.N.name`) or the block node to watch; one of the two.
    public var drive: String?
    public var node: String?
    public var chunkMiB: Int = 2560
    public var utilizationPercent: Int = 20
    /// The most the device may grow to; default: the disk's capacity plus 10 % (qcow2 metadata).
    public var maxSizeMiB: Int?
    /// The block device (or file) the image lives on: its size is what is extended and verified.
    public var device: String
    public var backend: Backend

    public init(vm: String, drive: String?, node: String?, device: String, backend: Backend) {
        self.vm = vm
        self.drive = drive
        self.node = node
        self.device = device
        self.backend = backend
    }

    /// The largest chunk or maximum size accepted, MiB (1 EiB).
    public static let largestMiB = 1 << 40

    /// A name for logs and the `thin` group.
    public var label: String { "\(vm)/\(drive ?? node ?? "?")" }
}

extension ConfigReader {
    static func thinDisks(_ node: Node, _ key: String) throws(ConfigError) -> [ThinDiskConfig] {
        guard let items = node.sequence else { throw ConfigError(key: key, message: "expected a list of disks") }
        var result: [ThinDiskConfig] = []
        for (i, item) in items.enumerated() {
            let k = "\(key)[\(i)]"
            var fields: [String: Node] = [:]
            for (name, value) in try ConfigReader(node: item, path: k).entries(known: [
                "vm", "drive", "node", "chunk_mib", "utilization_percent", "max_size_mib", "backend", "device", "file",
                "command", "command_args", "command_timeout",
            ]) {
                fields[name] = value
            }
            func text(_ name: String) throws(ConfigError) -> String? {
                try fields[name].map { (n) throws(ConfigError) in try string(n, "\(k).\(name)") }
            }
            guard let vm = try text("vm") else { throw ConfigError(key: "\(k).vm", message: "required: the VM's name or UUID") }
            let drive = try text("drive")
            let node = try text("node")
            guard (drive == nil) != (node == nil) else { throw ConfigError(key: k, message: "give either drive or node") }
            guard let device = try text("device") else {
                throw ConfigError(key: "\(k).device", message: "required: the block device (or file) holding the image, whose size is extended")
            }
            let backend: ThinDiskConfig.Backend
            switch try text("backend") {
            case "loop":
                guard let file = try text("file") else { throw ConfigError(key: "\(k).file", message: "required with backend: loop (the loop device's backing file)") }
                backend = .loop(file: file)
            case "command":
                guard let program = try text("command") else { throw ConfigError(key: "\(k).command", message: "required with backend: command") }
                var arguments: [String] = []
                if let list = fields["command_args"] {
                    guard let seq = list.sequence else { throw ConfigError(key: "\(k).command_args", message: "expected a list of text") }
                    arguments = try seq.map { (n) throws(ConfigError) in try string(n, "\(k).command_args") }
                }
                let timeout = try fields["command_timeout"].map { (n) throws(ConfigError) in try number(n, "\(k).command_timeout") } ?? 30
                guard timeout > 0 && timeout <= 3600 else { throw ConfigError(key: "\(k).command_timeout", message: "must be between 0 and 3600 seconds") }
                backend = .command(program: program, arguments: arguments, timeout: timeout)
            case let other?:
                throw ConfigError(key: "\(k).backend", message: "'\(other)' is not a backend (loop, command)")
            case nil:
                throw ConfigError(key: "\(k).backend", message: "required: loop or command")
            }
            var disk = ThinDiskConfig(vm: vm, drive: drive, node: node, device: device, backend: backend)
            if let n = fields["chunk_mib"] { disk.chunkMiB = try integer(n, "\(k).chunk_mib") }
            if let n = fields["utilization_percent"] { disk.utilizationPercent = try integer(n, "\(k).utilization_percent") }
            if let n = fields["max_size_mib"] { disk.maxSizeMiB = try integer(n, "\(k).max_size_mib") }
            // Bounds keep every size in bytes well inside 64 bits (and off_t).
            guard (1...ThinDiskConfig.largestMiB).contains(disk.chunkMiB) else {
                throw ConfigError(key: "\(k).chunk_mib", message: "must be between 1 and \(ThinDiskConfig.largestMiB) MiB")
            }
            guard (0...99).contains(disk.utilizationPercent) else { throw ConfigError(key: "\(k).utilization_percent", message: "must be between 0 and 99") }
            guard (1...ThinDiskConfig.largestMiB).contains(disk.maxSizeMiB ?? 1) else {
                throw ConfigError(key: "\(k).max_size_mib", message: "must be between 1 and \(ThinDiskConfig.largestMiB) MiB")
            }
            result.append(disk)
        }
        return result
    }
}

extension ThinDiskConfig {
    /// Refuses two entries for one disk (the same VM and drive, or VM and node) and two
    /// entries growing one device (or one loop file): two state machines would extend the
    /// same storage twice for one crossing, and their statuses would overwrite each other.
    /// Entries that name one VM by name and by UUID cannot be told apart here.
    static func checkDuplicates(_ disks: [ThinDiskConfig]) throws(ConfigError) {
        for (j, disk) in disks.enumerated() {
            for (i, earlier) in disks[..<j].enumerated() {
                if disk.vm == earlier.vm, (disk.drive != nil && disk.drive == earlier.drive) || (disk.node != nil && disk.node == earlier.node) {
                    throw ConfigError(key: "thin_disks[\(j)]", message: "the same disk as thin_disks[\(i)] (\(disk.label)); give each disk once")
                }
                if disk.device == earlier.device {
                    throw ConfigError(key: "thin_disks[\(j)].device", message: "\(disk.device) is also the device of thin_disks[\(i)] (\(earlier.label)); one device holds one disk")
                }
                if case .loop(let file) = disk.backend, case .loop(let other) = earlier.backend, file == other {
                    throw ConfigError(key: "thin_disks[\(j)].file", message: "\(file) is also the file of thin_disks[\(i)] (\(earlier.label)); one file backs one device")
                }
            }
        }
    }
}

extension AgentConfig {
    /// What only the host can say, checked when the agent starts (not when the file is
    /// parsed, so that `vmpulse stats` can read the same file anywhere): every thin disk's
    /// device exists and is a block device or a file, a loop disk's backing file exists, a
    /// command is an executable file, and no two disks reach one device through two paths
    /// (a symlink such as /dev/vg0/db and /dev/mapper/vg0-db).
    public func checkThinDisksOnHost() throws(ConfigError) {
        var seen: [(device: UInt64, inode: UInt64, index: Int)] = []
        for (i, disk) in thinDisks.enumerated() {
            let k = "thin_disks[\(i)]"
            var st = stat()
            guard stat(disk.device, &st) == 0 else {
                throw ConfigError(key: k + ".device", message: "\(disk.device): \(String(cString: strerror(errno))) (\(disk.label) cannot be extended without it)")
            }
            let kind = st.st_mode & S_IFMT
            guard kind == S_IFBLK || kind == S_IFREG else {
                throw ConfigError(key: k + ".device", message: "\(disk.device) is neither a block device nor a file")
            }
            // A block device is known by its device number, a file by its inode.
            let identity = kind == S_IFBLK ? (UInt64(st.st_rdev), UInt64(0)) : (UInt64(st.st_dev), UInt64(st.st_ino))
            if let earlier = seen.first(where: { $0.device == identity.0 && $0.inode == identity.1 }) {
                throw ConfigError(key: k + ".device", message: "\(disk.device) is the same device as thin_disks[\(earlier.index)] (\(thinDisks[earlier.index].device)); one device holds one disk")
            }
            seen.append((identity.0, identity.1, i))
            switch disk.backend {
            case .loop(let file):
                guard stat(file, &st) == 0 else { throw ConfigError(key: k + ".file", message: "\(file): \(String(cString: strerror(errno)))") }
                guard (st.st_mode & S_IFMT) == S_IFREG else { throw ConfigError(key: k + ".file", message: "\(file) is not a regular file") }
            case .command(let program, _, _):
                guard program.hasPrefix("/") else { throw ConfigError(key: k + ".command", message: "'\(program)' is not an absolute path") }
                guard stat(program, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(program, X_OK) == 0 else {
                    throw ConfigError(key: k + ".command", message: "\(program) is not an executable file")
                }
            }
        }
    }
}
