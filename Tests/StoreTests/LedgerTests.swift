import Foundation
import Store
import Testing
import VMPulseCore

@Suite(.serialized) struct LedgerTests {
    let key = DiskKey(vmUUID: "u1", disk: "drive0")

    func tempDir() throws -> String {
        let dir = "/tmp/vmpulse-ledger-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func batch(bytes: UInt64, period: Int64 = 0, cursorBytes: UInt64, at: Double = 10) -> LedgerBatch {
        LedgerBatch(
            usage: [PeriodUsage(key: key, vmName: "vm", diskPath: "/d", periodStart: period, periodEnd: period + 3600,
                                usage: BlockCounters([.writeBytes: bytes, .writeIOsError: 1]), samples: 1)],
            gaps: [],
            cursors: [key: LedgerCursor(instance: "1@2", counters: BlockCounters([.writeBytes: cursorBytes]), sampledAt: at)])
    }

    @Test func writesAddUpPerPeriodAndCursorsMove() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ledger = try Ledger.open(path: dir + "/ledger.sqlite")
        try ledger.write(batch(bytes: 100, cursorBytes: 100))
        try ledger.write(batch(bytes: 50, cursorBytes: 150, at: 11))
        try ledger.write(batch(bytes: 7, period: 3600, cursorBytes: 157, at: 3601))
        let rows = try ledger.usage()
        #expect(rows.map(\.periodStart) == [0, 3600])
        #expect(rows.map { $0.usage[.writeBytes] } == [150, 7])
        #expect(rows.first?.usage[.writeIOsError] == 2)
        #expect(rows.first?.samples == 2)
        #expect(try ledger.cursors()[key]?.counters[.writeBytes] == 157)
        #expect(try ledger.usage(from: 3600).count == 1)
        #expect(try ledger.usage(vm: "vm").count == 2)
        #expect(try ledger.usage(vm: "other").isEmpty)
        #expect(try ledger.sampleCount() == 3)
        #expect(try ledger.pruneSamples(before: 100) == 2)
        #expect(try ledger.usage().count == 2)  // periods are kept
        #expect(try ledger.createdAt() > 1_700_000_000)
    }

    @Test func reopeningKeepsEverythingAndTheCreationTime() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let created: Double
        do {
            let ledger = try Ledger.open(path: dir + "/ledger.sqlite")
            created = try ledger.createdAt()
            try ledger.write(LedgerBatch(usage: [], gaps: [UsageGap(key: key, vmName: "vm", from: 1, to: 2, reason: "test")], cursors: [:]))
        }
        let again = try Ledger.open(path: dir + "/ledger.sqlite")
        #expect(try again.createdAt() == created)
        #expect(try again.gaps().map(\.reason) == ["test"])
        let readOnly = try Ledger.open(path: dir + "/ledger.sqlite", readOnly: true)
        #expect(try readOnly.gaps(from: 0, to: 10).count == 1)
        #expect(try readOnly.gaps(from: 5, to: 10).isEmpty)
    }

    @Test func aCorruptFileIsRefusedAndLeftUntouched() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ledger.sqlite"
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try garbage.write(to: URL(fileURLWithPath: path))
        do {
            _ = try Ledger.open(path: path)
            Issue.record("opened a corrupt file")
        } catch {
            #expect(error.kind == .corrupt)
            #expect(error.message.contains("left untouched"))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == garbage)
    }

    /// A small tmpfs of its own (root is not stopped by file modes, so read-only and
    /// full disks are made with real mounts).
    func withTmpfs(size: String, _ body: (String) throws -> Void) throws {
        let mount = "/tmp/vmpulse-fs-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        guard system("mount -t tmpfs -o size=\(size) tmpfs \(mount)") == 0 else {
            Issue.record("cannot mount a tmpfs (the test needs root)")
            return
        }
        defer {
            _ = system("umount \(mount)")
            try? FileManager.default.removeItem(atPath: mount)
        }
        try body(mount)
    }

    @Test func aLedgerOnAReadOnlyFilesystemIsExplainedAndKeepsItsRows() throws {
        try withTmpfs(size: "4m") { mount in
            let path = mount + "/ledger.sqlite"
            do {
                let ledger = try Ledger.open(path: path)
                try ledger.write(batch(bytes: 100, cursorBytes: 100))
            }  // closed here, so the file system can be made read-only
            #expect(system("mount -o remount,ro \(mount)") == 0)
            do throws(LedgerError) {
                let ledger = try Ledger.open(path: path)
                try ledger.write(batch(bytes: 1, cursorBytes: 101))
                Issue.record("wrote to a read-only ledger")
            } catch {
                #expect(error.kind == .readOnly || error.kind == .cannotOpen, "\(error)")
                #expect(error.message.contains(path))
            }
            #expect(system("mount -o remount,rw \(mount)") == 0)
            #expect(try Ledger.open(path: path).usage().first?.usage[.writeBytes] == 100)
        }
    }

    @Test func aFullDiskIsReportedAndNothingWrittenBeforeIsLost() throws {
      try withTmpfs(size: "320k") { mount in
        let ledger = try Ledger.open(path: mount + "/ledger.sqlite")
        try ledger.write(batch(bytes: 100, cursorBytes: 100))
        var failure: LedgerError?
        for i in 0..<5000 {
            do throws(LedgerError) {
                try ledger.write(batch(bytes: 1, period: Int64(i + 1) * 3600, cursorBytes: 101 + UInt64(i), at: Double(20 + i)))
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure)
        #expect(error.kind == .full)
        #expect(error.message.contains("full"))
        #expect(try ledger.usage(to: 3600).first?.usage[.writeBytes] == 100)
    }
      }
}
