import Agent
import Foundation
import Testing

@Suite struct ThinDiskConfigTests {
    @Test func readsBothBackends() throws {
        let c = try AgentConfig.parse(yaml: """
            thin:
              polling_interval: 2
            thin_disks:
              - vm: web1
                drive: disk0
                device: /dev/loop3
                backend: loop
                file: /srv/web1.img
              - vm: 5f1c
                node: proto0
                chunk_mib: 1024
                utilization_percent: 50
                max_size_mib: 20480
                device: /dev/vg0/db
                backend: command
                command: /usr/local/sbin/grow
                command_args: [--vg, vg0]
                command_timeout: 45
            """)
        #expect(c.thinPollingInterval == 2)
        #expect(c.thinDisks.count == 2)
        var web = ThinDiskConfig(vm: "web1", drive: "disk0", node: nil, device: "/dev/loop3", backend: .loop(file: "/srv/web1.img"))
        web.chunkMiB = 2560
        #expect(c.thinDisks[0] == web)
        #expect(c.thinDisks[1].backend == .command(program: "/usr/local/sbin/grow", arguments: ["--vg", "vg0"], timeout: 45))
        #expect(c.thinDisks[1].chunkMiB == 1024 && c.thinDisks[1].utilizationPercent == 50 && c.thinDisks[1].maxSizeMiB == 20480)
        #expect(c.thinDisks[1].label == "5f1c/proto0")
    }

    @Test(arguments: [
        ("thin_disks: {vm: a}", "thin_disks", "expected a list"),
        ("thin_disks:\n  - drive: d\n    device: /d\n    backend: loop\n    file: /f", "thin_disks[0].vm", "required"),
        ("thin_disks:\n  - vm: a\n    device: /d\n    backend: loop\n    file: /f", "thin_disks[0]", "either drive or node"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    node: n\n    device: /d\n    backend: loop\n    file: /f", "thin_disks[0]", "either drive or node"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    backend: loop\n    file: /f", "thin_disks[0].device", "required"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: loop", "thin_disks[0].file", "required with backend: loop"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: nfs", "thin_disks[0].backend", "not a backend"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: command", "thin_disks[0].command", "required"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: loop\n    file: /f\n    chunk_mib: 0", "thin_disks[0].chunk_mib", "between 1 and"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: loop\n    file: /f\n    utilization_percent: 100", "thin_disks[0].utilization_percent", "between 0 and 99"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: loop\n    file: /f\n    size: 3", "thin_disks[0].size", "unknown key"),
        ("thin:\n  poling_interval: 2", "thin.poling_interval", "unknown key"),
        ("thin:\n  polling_interval: -1", "thin.polling_interval", "between 0.1 and 3600"),
        ("thin:\n  polling_interval: .inf", "thin.polling_interval", "expected a number"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: loop\n    file: /f\n    chunk_mib: 17592186044416", "thin_disks[0].chunk_mib", "between 1 and"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: loop\n    file: /f\n    max_size_mib: 0", "thin_disks[0].max_size_mib", "between 1 and"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: command\n    command: /x\n    command_timeout: 0", "thin_disks[0].command_timeout", "between 0 and 3600"),
        ("thin_disks:\n  - vm: a\n    drive: d\n    device: /d\n    backend: loop\n    file: /f\n    chunk_mib: lots", "thin_disks[0].chunk_mib", ""),
        // Duplicates: one disk twice, one device twice, one loop file twice.
        ("thin_disks:\n  - {vm: a, drive: d, device: /d1, backend: loop, file: /f1}\n  - {vm: a, drive: d, device: /d2, backend: loop, file: /f2}",
         "thin_disks[1]", "the same disk as thin_disks[0] (a/d)"),
        ("thin_disks:\n  - {vm: a, node: n, device: /d1, backend: loop, file: /f1}\n  - {vm: b, drive: x, device: /d3, backend: loop, file: /f3}\n  - {vm: a, node: n, device: /d2, backend: loop, file: /f2}",
         "thin_disks[2]", "the same disk as thin_disks[0] (a/n)"),
        ("thin_disks:\n  - {vm: a, drive: d, device: /dev/loop5, backend: loop, file: /f1}\n  - {vm: b, drive: d, device: /dev/loop5, backend: command, command: /x}",
         "thin_disks[1].device", "/dev/loop5 is also the device of thin_disks[0] (a/d)"),
        ("thin_disks:\n  - {vm: a, drive: d, device: /d1, backend: loop, file: /f}\n  - {vm: b, drive: d, device: /d2, backend: loop, file: /f}",
         "thin_disks[1].file", "/f is also the file of thin_disks[0]"),
    ])
    func badThinDisksNameTheKey(yaml: String, key: String, message: String) {
        do {
            _ = try AgentConfig.parse(yaml: yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect(error.key == key, "\(error)")
            #expect(message.isEmpty || error.message.contains(message), "\(error)")
        }
    }

    @Test func oneDiskOnTwoVMsOrTwoDrivesOfOneVMIsNoDuplicate() throws {
        let c = try AgentConfig.parse(yaml: """
            thin_disks:
              - {vm: a, drive: d, device: /d1, backend: loop, file: /f1}
              - {vm: b, drive: d, device: /d2, backend: loop, file: /f2}
              - {vm: a, drive: e, device: /d3, backend: loop, file: /f3}
              - {vm: a, node: d, device: /d4, backend: loop, file: /f4}
            """)
        #expect(c.thinDisks.count == 4)
    }

    /// What only the host can say is checked when the agent starts: real files here.
    @Test func theHostCheckFindsWhatIsMissing() throws {
        let dir = NSTemporaryDirectory() + "vmpulse-thincheck-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["dev1", "dev2", "file1"] { _ = FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(count: 16)) }
        try FileManager.default.createSymbolicLink(atPath: dir + "/alias", withDestinationPath: dir + "/dev1")
        let program = dir + "/grow"
        _ = FileManager.default.createFile(atPath: program, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        _ = FileManager.default.createFile(atPath: dir + "/notexec", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o644])
        func check(_ entries: String) -> ConfigError? {
            do {
                try AgentConfig.parse(yaml: "thin_disks:\n" + entries).checkThinDisksOnHost()
                return nil
            } catch {
                return error
            }
        }
        #expect(check("  - {vm: a, drive: d, device: \(dir)/dev1, backend: loop, file: \(dir)/file1}\n"
                      + "  - {vm: b, drive: d, device: \(dir)/dev2, backend: command, command: \(program)}\n") == nil)
        let missing = check("  - {vm: a, drive: d, device: \(dir)/nodev, backend: loop, file: \(dir)/file1}\n")
        #expect(missing?.key == "thin_disks[0].device" && missing?.message.contains("\(dir)/nodev: No such file or directory") == true, "\(String(describing: missing))")
        let noFile = check("  - {vm: a, drive: d, device: \(dir)/dev1, backend: loop, file: \(dir)/nofile}\n")
        #expect(noFile?.key == "thin_disks[0].file", "\(String(describing: noFile))")
        let notADevice = check("  - {vm: a, drive: d, device: \(dir), backend: loop, file: \(dir)/file1}\n")
        #expect(notADevice?.message.contains("neither a block device nor a file") == true, "\(String(describing: notADevice))")
        let twoPaths = check("  - {vm: a, drive: d, device: \(dir)/dev1, backend: command, command: \(program)}\n"
                             + "  - {vm: b, drive: d, device: \(dir)/alias, backend: command, command: \(program)}\n")
        #expect(twoPaths?.key == "thin_disks[1].device" && twoPaths?.message.contains("the same device as thin_disks[0]") == true, "\(String(describing: twoPaths))")
        let noProgram = check("  - {vm: a, drive: d, device: \(dir)/dev1, backend: command, command: \(dir)/nosuch}\n")
        #expect(noProgram?.key == "thin_disks[0].command", "\(String(describing: noProgram))")
        let notExecutable = check("  - {vm: a, drive: d, device: \(dir)/dev1, backend: command, command: \(dir)/notexec}\n")
        #expect(notExecutable?.message.contains("not an executable file") == true, "\(String(describing: notExecutable))")
        let relative = check("  - {vm: a, drive: d, device: \(dir)/dev1, backend: command, command: grow}\n")
        #expect(relative?.message.contains("not an absolute path") == true, "\(String(describing: relative))")
    }
}
