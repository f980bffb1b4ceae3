import Foundation
import Libvirt
import Testing
import VMPulseTestSupport

/// libvirtd going away under a connection, made through a relay in front of its socket.
@Suite(.serialized, .timeLimit(.minutes(2))) struct ConnectionLossTests {
    /// A daemon of this test's own (the shared one must not be stopped under other tests).
    @Test func aStoppedDaemonIsReportedClosedAndARestartedOneServesTheSameDomain() async throws {
        let daemon = try LibvirtDaemon.start(directory: "/tmp/vmp-lvloss-\(UUID().uuidString.prefix(6).lowercased())")
        defer {
            try? daemon.stop()
            try? FileManager.default.removeItem(atPath: daemon.directory)
        }
        let conn = try LibvirtConnection.open(uri: daemon.uri)
        defer { conn.close() }
        let events = conn.events()
        let dir = try LibvirtFixture.directory("loss")
        let domain = try LibvirtFixture.startDomain(conn, name: LibvirtFixture.name("loss"), in: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(conn.isAlive)

        try daemon.stop(keepGuests: true)
        let closed = try await firstEvent(events, within: .seconds(20), "connectionClosed") {
            if case .connectionClosed = $0 { return true }
            return false
        }
        #expect(closed == .connectionClosed(reason: LibvirtConstants.closeReasonEOF))
        // The stream ends after it.
        let ended = try await firstResult(within: .seconds(5)) {
            for await _ in events {}
            return true
        }
        #expect(ended)
        #expect(!conn.isAlive)
        do {
            _ = try conn.allDomainStats([.state], noWait: true)
            Issue.record("stats over a dead connection succeeded")
        } catch {
            #expect(error.isConnectionLost, "\(error)")
            #expect(!error.isClosed)
        }
        // A new stream on the dead connection says so at once.
        var late: [LibvirtEvent] = []
        for await event in conn.events() { late.append(event) }
        #expect(late == [.connectionClosed(reason: LibvirtConstants.closeReasonError)])

        // libvirtd comes back: a new connection finds the same running QEMU and gets events again.
        try daemon.start()
        let again = try LibvirtConnection.open(uri: daemon.uri)
        defer {
            _ = try? again.destroy(uuid: domain.uuid)
            again.close()
        }
        let newEvents = again.events()
        #expect(try again.state(uuid: domain.uuid).state == LibvirtConstants.domainPaused)
        try again.resume(uuid: domain.uuid)
        let uuid = domain.uuid
        _ = try await firstEvent(newEvents, within: .seconds(20), "RESUMED after the restart") {
            if case .lifecycle(uuid, _, LibvirtConstants.eventResumed, _) = $0 { return true }
            return false
        }
    }

    @Test func aHungDaemonIsNoticedByKeepalive() async throws {
        let relay = try SocketRelay(target: LibvirtFixture.socketPath())
        let conn = try LibvirtConnection.open(uri: LibvirtFixture.uri(through: relay.path))
        defer { conn.close() }
        let events = conn.events()
        relay.stall()
        let began = ContinuousClock.now
        // keepalive 5 s x 3: libvirt gives up after about 20 s without a word from the daemon.
        let closed = try await firstEvent(events, within: .seconds(45), "connectionClosed") {
            if case .connectionClosed = $0 { return true }
            return false
        }
        let waited = ContinuousClock.now - began
        #expect(closed == .connectionClosed(reason: LibvirtConstants.closeReasonKeepalive))
        #expect(waited > .seconds(10) && waited < .seconds(35), "\(waited)")
        #expect(!conn.isAlive)
        relay.cut()
    }
}
