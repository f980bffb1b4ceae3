import Agent
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
}
