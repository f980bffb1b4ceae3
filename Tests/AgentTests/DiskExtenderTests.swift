@testable import Agent
import Foundation
import Glibc
import Logging
import Testing
import VMPulseTestSupport

/// The extenders on their own: real files and real programs, no QEMU.
@Suite struct DiskExtenderTests {
    let dir: String = {
        let d = NSTemporaryDirectory() + "vmpulse-extender-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    func request(size: UInt64) -> ExtensionRequest {
        ExtensionRequest(vmName: "web1", vmUUID: "u-1", disk: "disk0", node: "proto0", device: dir + "/dev", currentSize: 1024, requestedSize: size)
    }

    func script(_ name: String, _ body: String) throws -> String {
        let path = dir + "/" + name
        try "#!/bin/sh\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    func extender(_ program: String, timeout: Duration = .seconds(5)) -> CommandExtender {
        CommandExtender(program: program, arguments: ["--flag"], timeout: timeout, device: dir + "/dev", logger: Logger(label: "test"))
    }

    @Test func theSizeOfAFileOrAMissingDevice() async throws {
        _ = FileManager.default.createFile(atPath: dir + "/dev", contents: Data(count: 4096))
        #expect(try await LoopDeviceExtender(device: dir + "/dev", file: dir + "/dev").currentSize() == 4096)
        await #expect {
            try await LoopDeviceExtender(device: dir + "/missing", file: dir + "/f").currentSize()
        } throws: { ($0 as? ExtenderError)?.message.contains("cannot stat \(dir)/missing") == true }
    }

    @Test func aLoopExtenderOverSomethingThatIsNoLoopDeviceSaysSo() async throws {
        _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data(count: 10))
        await #expect {
            try await LoopDeviceExtender(device: dir + "/file", file: dir + "/file").extend(to: 8192, request: request(size: 8192))
        } throws: { ($0 as? ExtenderError)?.message.contains("LOOP_SET_CAPACITY") == true }
        await #expect {
            try await LoopDeviceExtender(device: dir + "/file", file: dir + "/nofile").extend(to: 8192, request: request(size: 8192))
        } throws: { ($0 as? ExtenderError)?.message.contains("cannot open \(dir)/nofile") == true }
    }

    @Test func theCommandReadsTheRequestOnItsStandardInput() async throws {
        let seen = dir + "/seen"
        let ok = try script("ok", "cat > \(seen); echo \"args: $*\" >> \(seen); truncate -s 8192 \(dir)/dev")
        _ = FileManager.default.createFile(atPath: dir + "/dev", contents: nil)
        try await extender(ok).extend(to: 8192, request: request(size: 8192))
        let text = try String(contentsOfFile: seen, encoding: .utf8)
        #expect(text == "vm_name=web1\nvm_uuid=u-1\ndisk=disk0\nnode=proto0\ndevice=\(dir)/dev\ncurrent_size=1024\nrequested_size=8192\nargs: --flag\n")
        #expect(try await extender(ok).currentSize() == 8192)
    }

    @Test func aFailingCommandGivesItsLastErrorLine() async throws {
        let failing = try script("fail", "echo 'checking' >&2; echo 'volume group vg0 is full' >&2; exit 5")
        await #expect {
            try await extender(failing).extend(to: 8192, request: request(size: 8192))
        } throws: { error in
            let m = (error as? ExtenderError)?.message ?? ""
            return m.contains("failed") && m.contains("volume group vg0 is full") && m.contains("5")
        }
    }

    @Test func aHangingCommandIsKilledWithWhatItStartedAtItsTimeout() async throws {
        // A child of its own (a sleep with an odd duration, to be found by pgrep) and a wait.
        let marker = "sleep 59.\(Int.random(in: 100_000...999_999))"
        let hanging = try script("hang", "\(marker) & sleep 60")
        let started = ContinuousClock.now
        await #expect {
            try await extender(hanging, timeout: .milliseconds(300)).extend(to: 8192, request: request(size: 8192))
        } throws: { ($0 as? ExtenderError)?.message.contains("did not finish within") == true }
        #expect(ContinuousClock.now - started < .seconds(5))
        try await Task.sleep(for: .milliseconds(200))
        let left = try Spawn.capture("/usr/bin/pgrep", ["-f", marker])
        #expect(left.status == 1, "a child of the timed-out program is still running: \(left.stdout)")
    }

    @Test func aProgramThatSendsItsOutputElsewhereRunsToItsEnd() async throws {
        // A wrapper that logs to a file of its own closes the pipes at once; it is not done.
        let quiet = try script("quiet", "exec >\(dir)/quiet.log 2>&1; sleep 1; truncate -s 16384 \(dir)/dev; echo done")
        _ = FileManager.default.createFile(atPath: dir + "/dev", contents: nil)
        try await extender(quiet, timeout: .seconds(10)).extend(to: 16384, request: request(size: 16384))
        #expect(try await extender(quiet).currentSize() == 16384)
        #expect(try String(contentsOfFile: dir + "/quiet.log", encoding: .utf8) == "done\n")
    }

    @Test func aProgramThatExitsButLeavesAChildHoldingItsOutputSucceeds() async throws {
        let marker = "sleep 58.\(Int.random(in: 100_000...999_999))"
        let leaves = try script("leaves", "\(marker) & exit 0")
        let started = ContinuousClock.now
        try await extender(leaves, timeout: .milliseconds(500)).extend(to: 8192, request: request(size: 8192))
        #expect(ContinuousClock.now - started < .seconds(5))
        try await Task.sleep(for: .milliseconds(200))
        #expect(try Spawn.capture("/usr/bin/pgrep", ["-f", marker]).status == 1, "the program's child outlived it")
    }

    @Test func aProgramThatExitsAtOnceEndsTheExtensionWhateverItsChildrenHold() async throws {
        // `sleep &` inherits the program's standard output and error and keeps them open:
        // the extension must end when the program exits, not when its pipes close.
        let marker = "sleep 57.\(Int.random(in: 100_000...999_999))"
        let leaves = try script("leaves-output", "echo growing; \(marker) & exit 0")
        let started = ContinuousClock.now
        try await extender(leaves, timeout: .seconds(30)).extend(to: 8192, request: request(size: 8192))
        let took = ContinuousClock.now - started
        #expect(took < .seconds(3), "the extension waited \(took) for the program's child")
        try await Task.sleep(for: .milliseconds(200))
        #expect(try Spawn.capture("/usr/bin/pgrep", ["-f", marker]).status == 1, "the program's child outlived it")
    }

    @Test func aChildThatLeftTheProgramsGroupDoesNotHoldTheExtensionEither() async throws {
        // setsid puts the child out of reach of the group kill; its pipes must not matter.
        let marker = "sleep 56.\(Int.random(in: 100_000...999_999))"
        let escapes = try script("escapes", "setsid \(marker) & exit 0")
        defer { _ = try? Spawn.capture("/usr/bin/pkill", ["-f", marker]) }
        let started = ContinuousClock.now
        try await extender(escapes, timeout: .seconds(30)).extend(to: 8192, request: request(size: 8192))
        let took = ContinuousClock.now - started
        #expect(took < .seconds(3), "the extension waited \(took) for a child outside the program's group")
    }

    @Test func aMissingProgramClosesNoDescriptorTwice() async throws {
        // Descriptors this process holds (a QMP socket, the ledger) must survive any
        // number of failed runs: a pipe stands for them, checked after every round while
        // other runs open and close descriptors at the same time.
        let before = Self.openDescriptors()
        var sentinels: [(read: Int32, write: Int32)] = []
        for _ in 0..<8 {
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            sentinels.append((fds[0], fds[1]))
        }
        defer { for s in sentinels { close(s.read); close(s.write) } }
        let missing = dir + "/nosuchprogram"
        for round in 0..<25 {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask { try? await self.extender(missing).extend(to: 8192, request: self.request(size: 8192)) }
                }
                // Open and close descriptors meanwhile, as the agent's sockets and files do:
                // a number closed a second time would take one of these, or a sentinel.
                group.addTask {
                    for _ in 0..<200 {
                        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
                        if fd >= 0 { close(fd) }
                    }
                }
            }
            for (i, s) in sentinels.enumerated() {
                var byte: UInt8 = UInt8(i)
                #expect(write(s.write, &byte, 1) == 1, "round \(round): sentinel \(i) was closed under us (\(String(cString: strerror(errno))))")
                var back: UInt8 = 255
                #expect(read(s.read, &back, 1) == 1 && back == UInt8(i), "round \(round): sentinel \(i) was closed under us")
            }
        }
        #expect(Self.openDescriptors() == before + 16, "descriptors before: \(before), after (with 16 sentinels): \(Self.openDescriptors())")
    }

    static func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    @Test func aMissingProgramIsAnError() async throws {
        await #expect {
            try await extender(dir + "/nosuchprogram").extend(to: 8192, request: request(size: 8192))
        } throws: { ($0 as? ExtenderError)?.message.contains("cannot run \(dir)/nosuchprogram") == true }
    }
}
