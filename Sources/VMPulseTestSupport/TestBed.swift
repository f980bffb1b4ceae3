import Foundation

/// Why the test bed cannot run a guest.
public struct TestBedError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Launches real QEMU guests (TCG) from the project's own guest image.
///
/// Each test bed has a directory of its own under /tmp (unix socket paths must
/// stay short) holding the monitor sockets (`sockets/NAME.sock`), the disks,
/// serial logs and pid files. `shutdown()` stops every guest it started.
public final class TestBed: @unchecked Sendable {
    // @unchecked: `guests` is guarded by `lock`.
    public let directory: String
    public let socketDirectory: String
    public let imageDirectory: String
    private let lock = NSLock()
    private var guests: [Guest] = []

    public static let qemu = "/usr/bin/qemu-system-x86_64"
    public static let qemuImg = "/usr/bin/qemu-img"

    public convenience init(prefix: String = "vmpulse") throws {
        let dir = "/tmp/\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        try self.init(directory: dir, socketDirectory: dir + "/sockets")
    }

    /// A test bed in a directory of the caller's choice (`make demo` puts the sockets
    /// where `vmpulse stats` looks by default).
    public init(directory: String, socketDirectory: String) throws {
        imageDirectory = try Self.findImages()
        for tool in [Self.qemu, Self.qemuImg] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw TestBedError("\(tool) is missing: run 'make setup' (installs qemu-system-x86 and qemu-utils)")
        }
        self.directory = directory
        self.socketDirectory = socketDirectory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
    }

    /// Stops the guests whose pid files are under `directory` (guests another process launched).
    public static func stopGuests(in directory: String) -> Int {
        var stopped = 0
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names {
            let pidFile = directory + "/" + name + "/qemu.pid"
            guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0
            else { continue }
            Guest.stop(pid: pid)
            stopped += 1
        }
        return stopped
    }

    /// Where the guest image is: $VMPULSE_TESTBED_DIR, or `.testbed/` at the repository's root.
    static func findImages() throws -> String {
        let env = ProcessInfo.processInfo.environment["VMPULSE_TESTBED_DIR"]
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = env ?? root.appendingPathComponent(".testbed").path
        for file in ["vmlinuz", "initrd.img"] where !FileManager.default.fileExists(atPath: dir + "/" + file) {
            throw TestBedError("the test guest is not built (\(dir)/\(file) is missing): run 'make setup'")
        }
        return dir
    }

    /// Starts a guest and returns once QEMU runs (not once the guest has booted: see `Guest.waitReady`).
    @discardableResult
    public func launch(_ spec: GuestSpec) throws -> Guest {
        let guestDir = directory + "/" + spec.name
        let disks = try Self.makeDisks(spec, in: guestDir)
        let guest = Guest(spec: spec, directory: guestDir, socketPath: "\(socketDirectory)/\(spec.name).sock", disks: disks)
        try Self.run(Self.qemu, QEMUCommandLine.arguments(for: spec, guest: guest, images: imageDirectory))
        try guest.readPID()
        if let tap = spec.tap { try Self.run("/sbin/ip", ["link", "set", tap, "up"]) }
        lock.withLock { guests.append(guest) }
        return guest
    }

    /// Makes the guest's directory and its disks (new images, or the existing ones named), and
    /// writes the blkdebug configurations; returns the images' paths.
    static func makeDisks(_ spec: GuestSpec, in guestDir: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: guestDir, withIntermediateDirectories: true)
        var disks: [String] = []
        for (i, disk) in spec.disks.enumerated() {
            if let existing = disk.existingImage {
                disks.append(existing)
                continue
            }
            let path = "\(guestDir)/disk\(i).\(disk.format)"
            try run(qemuImg, ["create", "-q", "-f", disk.format, path, "\(disk.sizeMiB)M"])
            disks.append(path)
            if let conf = disk.blkdebug {
                try conf.write(toFile: "\(guestDir)/blkdebug\(i).conf", atomically: true, encoding: .utf8)
            }
        }
        return disks
    }

    /// Stops every guest this test bed started and removes its directory.
    public func shutdown() {
        let all = lock.withLock { guests }
        for guest in all { guest.stop() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs a program to completion; a non-zero exit is an error carrying its output.
    public static func run(_ program: String, _ arguments: [String]) throws {
        let log = "/tmp/vmpulse-run-\(UUID().uuidString.prefix(8)).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let status = try Spawn.run(program, arguments, outputPath: log)
        guard status == 0 else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestBedError("\(program) \(arguments.joined(separator: " ")) failed (\(status)): \(text)")
        }
    }
}
