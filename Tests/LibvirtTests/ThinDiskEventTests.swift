import Foundation
import Glibc
import Libvirt
import Testing
import VMPulseTestSupport

/// Block-threshold and I/O-error events from a real guest writing to a thin disk (a qcow2 on a
/// loop device of 16 MiB), through libvirt: the thin-disk loop the backend drives.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ThinDiskEventTests {
    @Test func thresholdThenOutOfSpaceThenExtendedAndResumed() async throws {
        let conn = try LibvirtFixture.open()
        defer { conn.close() }
        let events = conn.events()
        let dir = try LibvirtFixture.directory("thin")
        let thin = try ThinDiskFixture(directory: dir, physicalMiB: 16, capacityMiB: 256)
        defer { thin.detach() }
        let domain = try LibvirtFixture.startGuest(conn, name: LibvirtFixture.name("thin"), thin: thin, workload: "write:48")
        defer { LibvirtFixture.cleanUp(conn, [domain.uuid], dir) }
        let uuid = domain.uuid

        // The protocol node of the top image, as the QMP backend names it: `vda[1]`.
        try conn.setBlockThreshold(uuid: uuid, device: "vda[1]", bytes: 4 << 20)
        let armed = try #require(try conn.domainStats(uuids: [uuid], [.block], noWait: true).first)
        #expect(armed.uint("block.0.threshold") == 4 << 20)
        try conn.resume(uuid: uuid)

        let crossed = try await firstEvent(events, within: .seconds(60), "BLOCK_THRESHOLD") {
            if case .blockThreshold(uuid, _, _, _, _, _) = $0 { return true }
            return false
        }
        guard case .blockThreshold(_, let name, let device, let path, let threshold, let excess) = crossed else { return }
        #expect(name == domain.name)
        #expect(device == "vda[1]")
        #expect(path == thin.device)
        #expect(threshold == 4 << 20)
        #expect(excess > 0)

        // 48 MiB do not fit in 16: the guest pauses on ENOSPC.
        let ioError = try await firstEvent(events, within: .seconds(60), "IO_ERROR_REASON") {
            if case .ioError(uuid, _, _, _, _, _) = $0 { return true }
            return false
        }
        // libvirt names the device by its alias here, not by its target.
        #expect(ioError == .ioError(
            uuid: uuid, name: domain.name, path: thin.device, device: "virtio-disk0",
            action: LibvirtConstants.errorActionPause, reason: "enospc"))
        _ = try await firstEvent(events, within: .seconds(20), "SUSPENDED/IOERROR") {
            $0 == .lifecycle(uuid: uuid, name: domain.name, event: LibvirtConstants.eventSuspended, detail: LibvirtConstants.suspendedIOError)
        }
        let paused = try conn.state(uuid: uuid)
        #expect(paused.state == LibvirtConstants.domainPaused && paused.reason == LibvirtConstants.pausedIOError)
        #expect(try conn.diskErrors(uuid: uuid) == ["vda": LibvirtConstants.diskErrorNoSpace])
        // The threshold fired once and is gone.
        let stopped = try #require(try conn.allDomainStats([.block], noWait: true).first { $0.uuid == uuid })
        #expect(stopped.uint("block.0.threshold") == nil)
        #expect(stopped.uint("block.0.physical") == 16 << 20)

        // Extend the disk, resume: the guest finishes its 48 MiB.
        #expect(truncate(thin.file, off_t(128) << 20) == 0)
        #expect(try Spawn.run("/sbin/losetup", ["-c", thin.device]) == 0)
        try conn.resume(uuid: uuid)
        _ = try await firstEvent(events, within: .seconds(20), "RESUMED") {
            $0 == .lifecycle(uuid: uuid, name: domain.name, event: LibvirtConstants.eventResumed, detail: LibvirtConstants.resumedUnpaused)
        }
        let deadline = ContinuousClock.now + .seconds(60)
        var written: UInt64 = 0
        while ContinuousClock.now < deadline, written < 48 << 20 {
            try await Task.sleep(for: .milliseconds(250))
            written = try conn.domainStats(uuids: [uuid], [.block], noWait: true).first?.uint("block.0.wr.bytes") ?? 0
        }
        #expect(written == 48 << 20)
        #expect(try conn.state(uuid: uuid).state == LibvirtConstants.domainRunning)
    }

    @Test func aThresholdOnTheDiskTargetFiresUnderBothNames() async throws {
        let conn = try LibvirtFixture.open()
        defer { conn.close() }
        let events = conn.events()
        let dir = try LibvirtFixture.directory("thin2")
        let thin = try ThinDiskFixture(directory: dir, physicalMiB: 64, capacityMiB: 256)
        defer { thin.detach() }
        let domain = try LibvirtFixture.startGuest(conn, name: LibvirtFixture.name("thin2"), thin: thin, workload: "write:8")
        defer { LibvirtFixture.cleanUp(conn, [domain.uuid], dir) }
        let uuid = domain.uuid
        try conn.setBlockThreshold(uuid: uuid, device: "vda", bytes: 2 << 20)
        try conn.resume(uuid: uuid)

        var devices: Set<String> = []
        while devices.count < 2 {
            let seen = devices
            let event = try await firstEvent(events, within: .seconds(60), "BLOCK_THRESHOLD") {
                if case .blockThreshold(uuid, _, let device, _, _, _) = $0 { return !seen.contains(device) }
                return false
            }
            if case .blockThreshold(_, _, let device, _, _, _) = event { devices.insert(device) }
        }
        #expect(devices == ["vda", "vda[1]"])
    }
}
