import Glibc
import NIOPosix

/// Why an extension did not happen.
public struct ExtenderError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Grows the storage under a thin disk.
public protocol DiskExtender: Sendable {
    /// The block device (or file) that grows.
    var device: String { get }
    /// Grows the device to at least `size` bytes (never shrinks it).
    func extend(to size: UInt64, request: ExtensionRequest) async throws(ExtenderError)
    /// The device's size now, in bytes.
    func currentSize() async throws(ExtenderError) -> UInt64
}

extension DiskExtender {
    /// The device's size as the kernel says (BLKGETSIZE64, or a file's length).
    public func currentSize() async throws(ExtenderError) -> UInt64 {
        let device = self.device
        return try await Blocking.run { () throws(ExtenderError) in try DeviceSize.bytes(device) }
    }
}

/// Runs blocking system calls on NIO's thread pool: a call on storage that hangs (a dead
/// multipath device, a stuck NFS backing file) must not hold one of Swift's few
/// cooperative threads, which every other disk, the sampler and the API share.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws(ExtenderError) -> T) async throws(ExtenderError) -> T {
        do {
            return try await NIOThreadPool.singleton.runIfActive { try body() }
        } catch let error as ExtenderError {
            throw error
        } catch {
            throw ExtenderError("\(error)")
        }
    }
}

/// What an extension is for, handed to external programs.
public struct ExtensionRequest: Sendable {
    public var vmName: String
    public var vmUUID: String
    public var disk: String
    public var node: String
    public var device: String
    public var currentSize: UInt64
    public var requestedSize: UInt64

    /// `name=value` lines, as fence agents read their arguments.
    public var lines: String {
        """
        vm_name=\(vmName)
        vm_uuid=\(vmUUID)
        disk=\(disk)
        node=\(node)
        device=\(device)
        current_size=\(currentSize)
        requested_size=\(requestedSize)

        """
    }
}

/// The size of a block device (BLKGETSIZE64) or a regular file.
enum DeviceSize {
    static let blkGetSize64: UInt = 0x8008_1272
    static let loopSetCapacity: UInt = 0x4C07

    static func bytes(_ path: String) throws(ExtenderError) -> UInt64 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ExtenderError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        if (st.st_mode & S_IFMT) == S_IFREG { return UInt64(st.st_size) }
        guard (st.st_mode & S_IFMT) == S_IFBLK else { throw ExtenderError("\(path) is neither a block device nor a file") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ExtenderError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var size: UInt64 = 0
        guard ioctl(fd, blkGetSize64, &size) == 0 else { throw ExtenderError("BLKGETSIZE64 on \(path): \(String(cString: strerror(errno)))") }
        return size
    }
}

/// A loop device over a sparse file: the stand-in for `lvextend` on a host without LVM.
/// Grows the file, then tells the loop driver to re-read its size (LOOP_SET_CAPACITY,
/// what `losetup -c` does).
public struct LoopDeviceExtender: DiskExtender {
    public let device: String
    public let file: String

    public init(device: String, file: String) {
        self.device = device
        self.file = file
    }

    public func extend(to size: UInt64, request: ExtensionRequest) async throws(ExtenderError) {
        let (device, file) = (self.device, self.file)
        try await Blocking.run { () throws(ExtenderError) in try Self.grow(device: device, file: file, to: size) }
    }

    private static func grow(device: String, file: String, to size: UInt64) throws(ExtenderError) {
        guard size <= UInt64(Int64.max) else { throw ExtenderError("\(size) bytes is more than a file can hold") }
        let backing = open(file, O_WRONLY | O_CLOEXEC)
        guard backing >= 0 else { throw ExtenderError("cannot open \(file): \(String(cString: strerror(errno)))") }
        defer { close(backing) }
        var st = stat()
        guard fstat(backing, &st) == 0 else { throw ExtenderError("cannot stat \(file): \(String(cString: strerror(errno)))") }
        if UInt64(st.st_size) < size {
            guard ftruncate(backing, off_t(size)) == 0 else { throw ExtenderError("cannot grow \(file) to \(size) bytes: \(String(cString: strerror(errno)))") }
        }
        let loop = open(device, O_RDONLY | O_CLOEXEC)
        guard loop >= 0 else { throw ExtenderError("cannot open \(device): \(String(cString: strerror(errno)))") }
        defer { close(loop) }
        guard ioctl(loop, DeviceSize.loopSetCapacity, 0) == 0 else {
            throw ExtenderError("LOOP_SET_CAPACITY on \(device): \(String(cString: strerror(errno))) (is it a loop device over \(file)?)")
        }
    }
}
