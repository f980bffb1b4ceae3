import Foundation
import Libvirt
import Testing

/// Stats, state, thresholds and monitor commands on real transient TCG domains.
@Suite(.serialized, .timeLimit(.minutes(3))) struct DomainTests {
    @Test func bulkStatsCarryLibvirtsKeys() throws {
        let conn = try LibvirtFixture.open()
        defer { conn.close() }
        let dir = try LibvirtFixture.directory("bulk")
        let domain = try LibvirtFixture.startDomain(conn, name: LibvirtFixture.name("bulk"), in: dir)
        defer { LibvirtFixture.cleanUp(conn, [domain.uuid], dir) }
        #expect(domain.isActive && domain.id > 0)
        #expect(domain.state == LibvirtConstants.domainPaused)

        let all = try conn.allDomainStats([.state, .cpuTotal, .balloon, .vcpu, .block], noWait: true)
        let mine = try #require(all.first { $0.uuid == domain.uuid })
        #expect(mine.name == domain.name)
        #expect(mine.int("state.state") == Int64(LibvirtConstants.domainPaused))
        #expect(mine.int("block.count") == 1)
        #expect(mine.string("block.0.name") == "vda")
        #expect(mine.string("block.0.path")?.hasSuffix(".qcow2") == true)
        #expect(mine.uint("block.0.wr.bytes") == 0)
        #expect(mine.uint("block.0.rd.reqs") != nil)
        #expect(mine.uint("block.0.capacity") == 64 << 20)
        #expect(mine.uint("cpu.time") != nil)
        #expect(mine.int("vcpu.current") == 1)
        #expect(try conn.domains().contains(domain))
    }

    @Test func statsByUUIDLeaveOutDomainsThatAreGone() throws {
        let conn = try LibvirtFixture.open()
        defer { conn.close() }
        let dir = try LibvirtFixture.directory("byuuid")
        let a = try LibvirtFixture.startDomain(conn, name: LibvirtFixture.name("a"), in: dir)
        let b = try LibvirtFixture.startDomain(conn, name: LibvirtFixture.name("b"), in: dir)
        defer { LibvirtFixture.cleanUp(conn, [a.uuid, b.uuid], dir) }

        let both = try conn.domainStats(uuids: [a.uuid, b.uuid.uppercased()], [.state], noWait: true)
        #expect(Set(both.map(\.uuid)) == [a.uuid, b.uuid])

        try conn.destroy(uuid: b.uuid)
        let never = "6b1a3c1e-0000-4000-8000-000000000000"
        let left = try conn.domainStats(uuids: [a.uuid, b.uuid, never], [.state, .block], noWait: false)
        #expect(left.map(\.uuid) == [a.uuid])
        #expect(left.first?.string("block.0.name") == "vda")
        #expect(try conn.domainStats(uuids: [b.uuid], [.state], noWait: true).isEmpty)
        #expect(try conn.domainStats(uuids: [], [.state], noWait: true).isEmpty)

        // A single-domain call on the destroyed one says the domain is gone.
        do {
            _ = try conn.state(uuid: b.uuid)
            Issue.record("state of a destroyed domain succeeded")
        } catch {
            #expect(error.isNoDomain, "\(error)")
            #expect(!error.isConnectionLost && !error.isTimeout)
        }
    }

    @Test func stateResumeAndTheResumedEvent() async throws {
        let conn = try LibvirtFixture.open()
        defer { conn.close() }
        let events = conn.events()
        let second = conn.events()
        let dir = try LibvirtFixture.directory("resume")
        let domain = try LibvirtFixture.startDomain(conn, name: LibvirtFixture.name("resume"), in: dir)
        defer { LibvirtFixture.cleanUp(conn, [domain.uuid], dir) }

        let paused = try conn.state(uuid: domain.uuid)
        #expect(paused.state == LibvirtConstants.domainPaused)
        #expect(paused.reason == LibvirtConstants.pausedUser)

        try conn.resume(uuid: domain.uuid)
        let uuid = domain.uuid
        let event = try await firstEvent(events, within: .seconds(20), "RESUMED event") {
            if case .lifecycle(uuid, _, LibvirtConstants.eventResumed, _) = $0 { return true }
            return false
        }
        #expect(event == .lifecycle(uuid: uuid, name: domain.name, event: LibvirtConstants.eventResumed, detail: LibvirtConstants.resumedUnpaused))
        #expect(try conn.state(uuid: uuid).state == LibvirtConstants.domainRunning)
        // Every stream gets every event.
        #expect(try await firstEvent(second, within: .seconds(5), "RESUMED on the second stream") { $0 == event } == event)

        try conn.suspend(uuid: uuid)
        _ = try await firstEvent(events, within: .seconds(20), "SUSPENDED event") {
            if case .lifecycle(uuid, _, LibvirtConstants.eventSuspended, LibvirtConstants.suspendedPaused) = $0 { return true }
            return false
        }
        try conn.destroy(uuid: uuid)
        _ = try await firstEvent(events, within: .seconds(20), "STOPPED event") {
            if case .lifecycle(uuid, _, LibvirtConstants.eventStopped, _) = $0 { return true }
            return false
        }
    }

    @Test func monitorCommandXMLAndDiskErrors() throws {
        let conn = try LibvirtFixture.open()
        defer { conn.close() }
        let dir = try LibvirtFixture.directory("qmp")
        let domain = try LibvirtFixture.startDomain(conn, name: LibvirtFixture.name("qmp"), in: dir)
        defer { LibvirtFixture.cleanUp(conn, [domain.uuid], dir) }

        let reply = try conn.qemuMonitorCommand(uuid: domain.uuid, json: #"{"execute":"query-status"}"#)
        #expect(reply.contains(#""status":"prelaunch""#) || reply.contains(#""status":"paused""#), "\(reply)")
        #expect(reply.contains(#""running":false"#), "\(reply)")

        // QMP's own errors are not libvirt errors: they come back in the reply.
        let unknown = try conn.qemuMonitorCommand(uuid: domain.uuid, json: #"{"execute":"no-such-command"}"#)
        #expect(unknown.contains(#""class":"CommandNotFound""#), "\(unknown)")
        // Input that is not JSON is libvirt's error.
        #expect(throws: LibvirtError.self) { try conn.qemuMonitorCommand(uuid: domain.uuid, json: "not json") }

        let xml = try conn.xmlDescription(uuid: domain.uuid)
        #expect(xml.contains("<name>\(domain.name)</name>"))
        #expect(xml.contains("<uuid>\(domain.uuid)</uuid>"))
        #expect(try conn.diskErrors(uuid: domain.uuid).isEmpty)
    }
}
