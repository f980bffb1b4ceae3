import Foundation
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Failed and invalid operations, produced on purpose on real guests, and counted
/// apart from the billable counters in the ledger.
@Suite(.serialized) struct RareEventTests {
    @Test func failedAndInvalidOperationsAreCountedApart() async throws {
        let bed = try TestBed(prefix: "rare")
        defer { bed.shutdown() }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory)
        try await agent.waitReady()

        // Failed: QEMU's blkdebug driver fails every write to sector 2048 with EIO; werror=report
        // hands the error to the guest instead of pausing it.
        var failing = GuestSpec(name: "failing")
        var disk = DiskSpec(sizeMiB: 64, format: "raw")
        disk.blkdebug = "[inject-error]\nevent = \"write_aio\"\nerrno = \"5\"\nsector = \"2048\"\nonce = \"off\"\n"
        disk.driveOptions = "werror=report,rerror=report"
        failing.disks = [disk]
        // Invalid: the device shrinks under a guest that is writing near its end; requests the
        // guest sent before it saw the new size are past the end, and QEMU counts them invalid.
        var shrinking = GuestSpec(name: "shrinking")
        var plain = DiskSpec(sizeMiB: 64, format: "raw")
        plain.driveOptions = "werror=report,rerror=report"
        shrinking.disks = [plain]
        let f = try bed.launch(failing)
        let s = try bed.launch(shrinking)
        try await f.waitReady()
        try await s.waitReady()

        let fshell = try await f.shell()
        let failed = try await fshell.run("dd if=/dev/zero of=/dev/vda bs=4k count=1 seek=256 oflag=direct")
        #expect(failed.status != 0)
        #expect(failed.output.contains("Input/output error"))
        try await fshell.check("dd if=/dev/zero of=/dev/vda bs=4k count=1 seek=0 oflag=direct")
        await fshell.close()

        let sshell = try await s.shell()
        for w in 0..<8 {
            try await sshell.check("(while [ ! -e /tmp/stop ]; do dd if=/dev/zero of=/dev/vda bs=64k count=8 seek=\(900 + w * 8) oflag=direct 2>/dev/null; done) >/dev/null 2>&1 &")
        }
        let control = try await QMPClient.connect(socketPath: s.controlSocket)
        var flips = 0
        var invalid: UInt64 = 0
        // The race is won within a handful of flips here (4 to 5 in the runs we measured); the bound keeps the test finite.
        while invalid == 0 && flips < 200 {
            flips += 1
            _ = try await control.execute("block_resize", arguments: ["device": "drive0", "size": .int(32 << 20)])
            try await Task.sleep(for: .milliseconds(50))
            _ = try await control.execute("block_resize", arguments: ["device": "drive0", "size": .int(64 << 20)])
            invalid = try await LedgerReading.qemu(control).counters[.invalidWriteIOs]
        }
        await control.close()
        try await sshell.check("touch /tmp/stop; sleep 1")
        await sshell.close()
        #expect(invalid > 0, "no invalid write in \(flips) flips")

        let fl = try await LedgerReading.settled(f, dataDir: agent.dataDirectory, vm: "failing")
        #expect(fl[.writeIOsError] >= 1)
        #expect(fl[.writeIOs] >= 1)  // the good write is billable, the failed one is not folded in
        #expect(fl[.invalidWriteIOs] == 0)
        let sl = try await LedgerReading.settled(s, dataDir: agent.dataDirectory, vm: "shrinking")
        #expect(sl[.invalidWriteIOs] >= 1)
        #expect(sl[.writeIOsError] == 0)
        try await agent.stop()
    }
}
