import Foundation
@testable import Engine
import Testing
import VMPulseCore

/// The fleet store's logic on a real SQLite file (the PostgreSQL run is in EndToEndTests).
@Suite struct FleetStoreTests {
    func withStore(_ body: (FleetStore, String) async throws -> Void) async throws {
        let dir = "/tmp/vmpulse-fleet-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await FleetStore.open(.sqlite(path: dir + "/fleet.sqlite"))
        try await body(store, dir + "/fleet.sqlite")
        await store.database.close()
    }

    func host(_ name: String, state: HostState = .up, last: Double = 100) -> HostReport {
        HostReport(name: name, address: "127.0.0.1:1", state: state, lastAnswer: last, lastAttempt: last, problem: nil, vmCount: 1, staleAfter: 10)
    }

    func vm(_ uuid: String, _ status: String, seen: Double = 100) -> VMReport {
        var v = VMReport(uuid: uuid, status: status, hashes: ["info": "1"], seen: seen)
        v.name = "vm-" + uuid
        v.cpuUser = 1.5
        return v
    }

    func page(_ ledger: String, _ rows: [(Int64, String, UInt64, Int64)], next: Int64) -> BillingPage {
        BillingPage(ledger: ledger, rows: rows.map { rev, uuid, bytes, period in
            BillingRow(revision: rev, usage: PeriodUsage(key: DiskKey(vmUUID: uuid, disk: "drive0"), vmName: "vm-" + uuid, diskPath: "/d",
                                                         periodStart: period, periodEnd: period + 3600, usage: BlockCounters([.writeBytes: bytes]), samples: 1))
        }, gaps: [], next: next, nextGap: 0, more: false)
    }

    @Test func aHostsVMsAreReplacedByItsNextReportAndChangesKept() async throws {
        try await withStore { store, _ in
            try await store.save(host: host("a"), vms: [vm("1", "Up"), vm("2", "Up")], changes: [
                StatusChange(host: "a", uuid: "1", at: 100, from: nil, to: "Up", source: "poll"),
            ])
            try await store.save(host: host("a"), vms: [vm("1", "Paused")], changes: [
                StatusChange(host: "a", uuid: "1", at: 103, from: "Up", to: "Paused", source: "poll"),
            ])
            let vms = try await store.vms(now: 101)
            #expect(vms.map(\.report.uuid) == ["1"])
            #expect(vms.first?.report.status == "Paused")
            #expect(vms.first?.report.name == "vm-1")
            #expect(vms.first?.report.cpuUser == 1.5)
            #expect(try await store.statusChanges().map(\.to) == ["Paused", "Up"])
            // A host saved without VMs (its poll failed) keeps the ones it had.
            try await store.save(host: host("a", state: .stale), vms: nil, changes: [])
            #expect(try await store.vms(now: 101).count == 1)
            #expect(try await store.hosts().first?.state == .stale)
        }
    }

    @Test func aMigratedVMIsOneVMOnTheHostWhereItRuns() async throws {
        try await withStore { store, _ in
            try await store.save(host: host("a"), vms: [vm("1", "Migration Source", seen: 100)], changes: [])
            try await store.save(host: host("b"), vms: [vm("1", "Up", seen: 99)], changes: [])
            var vms = try await store.vms(now: 101)
            #expect(vms.count == 1)
            #expect(vms.first?.host == "b")
            #expect(vms.first?.alsoOn == ["a"])
            // b goes stale: a claim from a host that answers wins.
            try await store.save(host: host("b", state: .stale, last: 50), vms: nil, changes: [])
            vms = try await store.vms(now: 101)
            #expect(vms.first?.host == "a")
        }
    }

    @Test func aHostIsStaleToAReaderOnceItsLastAnswerIsOlderThanStaleAfter() {
        let h = host("a", last: 100)
        #expect(!FleetView.isStale(h, now: 105))
        #expect(FleetView.isStale(h, now: 111))
        var never = h
        never.lastAnswer = nil
        #expect(FleetView.isStale(never, now: 0))
    }

    @Test func aPageCopiedTwiceCountsOnceAndACursorMovesWithIt() async throws {
        try await withStore { store, _ in
            let p1 = page("L1", [(1, "u1", 100, 0), (2, "u2", 7, 0)], next: 2)
            try await store.copy(p1, host: "a")
            try await store.copy(p1, host: "a")  // an engine killed before it saw the commit copies it again
            #expect(try await store.cursor(host: "a") == BillingCursor(ledger: "L1", revision: 2, gap: 0))
            // The open period grew on the agent: its row comes again with its total.
            try await store.copy(page("L1", [(3, "u1", 150, 0)], next: 3), host: "a")
            let rows = try await store.billing()
            #expect(rows.map(\.usage.usage[.writeBytes]) == [150, 7])
            #expect(rows.map(\.host) == ["a", "a"])
        }
    }

    @Test func aVMThatMovedIsBilledOncePerHostAndSummedByVM() async throws {
        try await withStore { store, _ in
            try await store.copy(page("LA", [(1, "u1", 100, 0)], next: 1), host: "a")
            try await store.copy(page("LB", [(1, "u1", 30, 0), (2, "u1", 5, 3600)], next: 2), host: "b")
            let rows = try await store.billing()
            #expect(rows.map(\.host) == ["a", "b", "b"])
            let byVM = try FleetStore.byVM(rows)
            #expect(byVM.map(\.usage[.writeBytes]) == [130, 5])
            #expect(byVM.map(\.samples) == [2, 1])
            #expect(try await store.billing(from: 3600).map(\.usage.usage[.writeBytes]) == [5])
            #expect(try await store.billing(vm: "vm-u1").count == 3)
        }
    }

    @Test func twoLedgersOfOneHostAreSummedAndAnOverflowIsAnErrorNotAWrap() async throws {
        try await withStore { store, _ in
            try await store.copy(page("old", [(1, "u1", UInt64.max - 1, 0)], next: 1), host: "a")
            try await store.copy(page("new", [(1, "u1", 1, 0)], next: 1), host: "a")
            #expect(try await store.billing().first?.usage.usage[.writeBytes] == UInt64.max)
            try await store.copy(page("newer", [(1, "u1", 1, 0)], next: 1), host: "a")
            await #expect(throws: FleetStoreError.self) { try await store.billing() }
        }
    }

    @Test func sampleCountsThatOverflowAreAnErrorNotATrap() async throws {
        try await withStore { store, _ in
            try await store.copy(page("old", [(1, "u1", 1, 0)], next: 1), host: "a")
            try await store.copy(page("new", [(1, "u1", 1, 0)], next: 1), host: "a")
            try await store.database.transaction([SQLStatement("UPDATE billing SET samples = ?", [.integer(Int64.max)])])
            await #expect(throws: FleetStoreError.self) { try await store.billing() }
            // And over hosts, by VM.
            let one = FleetUsage(host: "a", usage: PeriodUsage(key: DiskKey(vmUUID: "u1", disk: "d"), vmName: "v", diskPath: "/d", periodStart: 0,
                                                                periodEnd: 1, usage: BlockCounters(), samples: Int.max))
            var other = one
            other.host = "b"
            #expect(throws: FleetStoreError.self) { try FleetStore.byVM([one, other]) }
        }
    }

    @Test func countersUpTo2To64Minus1AreKeptExactly() async throws {
        try await withStore { store, _ in
            try await store.copy(page("L", [(1, "u1", UInt64.max, 0)], next: 1), host: "a")
            #expect(try await store.billing().first?.usage.usage[.writeBytes] == UInt64.max)
        }
    }

    @Test func aDamagedRowIsNamedNotGuessed() async throws {
        try await withStore { store, _ in
            try await store.copy(page("L", [(1, "u1", 5, 0)], next: 1), host: "a")
            try await store.database.transaction([SQLStatement("UPDATE billing SET write_bytes = '-1'")])
            await #expect(throws: FleetStoreError.self) { try await store.billing() }
            do {
                _ = try await store.billing()
            } catch {
                #expect("\(error)".contains("write_bytes"))
            }
        }
    }

    @Test func aClosedStoreIsReadReadOnly() async throws {
        try await withStore { store, path in
            try await store.save(host: host("a"), vms: [vm("1", "Up")], changes: [])
            await store.database.close()
            let reader = try await FleetStore.open(.sqlite(path: path), readOnly: true)
            #expect(try await reader.hosts().map(\.name) == ["a"])
            await #expect(throws: FleetStoreError.self) {
                try await reader.database.transaction([SQLStatement("DELETE FROM hosts")])
            }
            await reader.database.close()
        }
    }

    @Test func aStoreFromANewerVmpulseIsRefused() async throws {
        try await withStore { store, path in
            try await store.database.transaction([SQLStatement("UPDATE fleet_meta SET value = '99' WHERE key = 'schema_version'")])
            await #expect(throws: FleetStoreError.self) { try await FleetStore.open(.sqlite(path: path)) }
        }
    }

    @Test func aFileThatIsNotAStoreIsRefusedAndLeftAlone() async throws {
        let path = "/tmp/vmpulse-fleet-garbage-\(UUID().uuidString.prefix(8))"
        try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        await #expect(throws: FleetStoreError.self) { try await FleetStore.open(.sqlite(path: path)) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(repeating: 0x41, count: 4096))
    }
}
