import Testing
import VMPulseCore

@Suite struct QEMUArgumentsTests {
    @Test func readsNameUUIDAndDevicesInBothForms() {
        let argv = [
            "/usr/bin/qemu-system-x86_64", "-name", "guest=web,,1,debug-threads=on", "-uuid", "0bfa3b1c-0000-4000-8000-000000000001",
            "-device", "virtio-blk-pci,drive=drive0,id=disk0",
            "-device", #"{"driver":"virtio-balloon-pci","id":"balloon0","bus":"pci.5"}"#,
            "--device", "driver=virtio-net-pci,netdev=n0",
            "-S",
        ]
        let a = QEMUArguments(arguments: argv)
        #expect(a.name == "web,1")
        #expect(a.uuid == "0bfa3b1c-0000-4000-8000-000000000001")
        #expect(a.devices == [
            .init(driver: "virtio-blk-pci", id: "disk0"),
            .init(driver: "virtio-balloon-pci", id: "balloon0"),
            .init(driver: "virtio-net-pci", id: nil),
        ])
        #expect(a.peripheralPath(driverPrefix: "virtio-balloon") == "/machine/peripheral/balloon0")
        #expect(a.peripheralPath(driverPrefix: "virtio-net") == nil)

    }

    @Test func parsesProcCmdlineText() {
        let a = QEMUArguments(cmdline: "qemu\0-name\0plain\0-m\0128\0")
        #expect(a.name == "plain")
        #expect(a.uuid == nil)
    }

    @Test func toleratesTruncatedOrOddCommandLines() {
        #expect(QEMUArguments(arguments: ["qemu", "-name"]) == QEMUArguments())
        #expect(QEMUArguments(arguments: ["qemu", "-device", "{not json"]).devices.isEmpty)
        #expect(QEMUArguments(arguments: ["qemu", "-device", "id=x"]).devices.isEmpty)
        #expect(QEMUArguments(arguments: []) == QEMUArguments())
    }

    @Test(arguments: [("4", 4), ("cpus=2,maxcpus=8", 8), ("2,maxcpus=4,sockets=1,cores=4", 4), ("2,sockets=2,cores=1", nil), ("x", nil)] as [(String, Int?)])
    func readsTheVCPUMaximumOnlyWhenPlain(smp: String, expected: Int?) {
        #expect(QEMUArguments(arguments: ["qemu", "-smp", smp]).maxVCPUs == expected)
    }

    @Test(arguments: [("128", 128 << 20), ("1G", 1 << 30), ("size=131072k", 128 << 20), ("size=1G,slots=2,maxmem=4G", nil), ("12Q", nil), ("", nil)] as [(String, UInt64?)])
    func readsAFixedMemorySize(m: String, expected: UInt64?) {
        #expect(QEMUArguments(arguments: ["qemu", "-m", m]).fixedMemoryBytes == expected)
    }
}
