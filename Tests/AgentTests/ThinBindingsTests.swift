@testable import Agent
import Testing

/// A thin disk is bound only while exactly one running VM answers to its `vm`.
@Suite struct ThinBindingsTests {
    let uuid = "0b6f6c1e-3c1a-4d5e-9a43-6f2d1c0e7a55"

    func claim(_ socket: String, _ name: String, _ uuid: String) -> ThinBindings.Claim {
        .init(socket: socket, name: name, uuid: uuid)
    }

    @Test func oneVMBindsItsDisksByNameOrUUID() {
        var t = ThinBindings(vms: ["web1", uuid, "other"])
        let changes = t.connected(7, claim("/q/web1.sock", "web1", uuid))
        #expect(changes[0] == [.bind(connection: 7, claim("/q/web1.sock", "web1", uuid))])
        #expect(changes[1] == [.bind(connection: 7, claim("/q/web1.sock", "web1", uuid))])
        #expect(changes[2] == nil)
        #expect(t.disks(of: 7) == [0, 1])
        #expect(t.disconnected(7) == [0: [.unbind(connection: 7)], 1: [.unbind(connection: 7)]])
        #expect(t.disks(of: 7).isEmpty)
    }

    @Test func aCloneUnbindsTheDiskFromBothUntilOneIsGone() {
        var t = ThinBindings(vms: [uuid])
        _ = t.connected(1, claim("/q/a.sock", "a", uuid))
        let clone = t.connected(2, claim("/q/b.sock", "b", uuid))
        #expect(clone[0] == [.unbind(connection: 1), .contested(sockets: ["/q/a.sock", "/q/b.sock"])])
        #expect(t.disks(of: 1).isEmpty && t.disks(of: 2).isEmpty)
        // Events of either connection reach no disk meanwhile; when the clone goes, the
        // original has its disk back.
        #expect(t.disconnected(2) == [0: [.bind(connection: 1, claim("/q/a.sock", "a", uuid)), .contested(sockets: [])]])
        #expect(t.disks(of: 1) == [0])
    }

    @Test func twoVMsWithOneNameContestADiskNamedSoAndBothGoing() {
        var t = ThinBindings(vms: ["db"])
        _ = t.connected(1, claim("/q/x.sock", "db", ""))
        _ = t.connected(2, claim("/q/y.sock", "db", ""))
        #expect(t.owner == [nil])
        _ = t.disconnected(1)
        #expect(t.disconnected(2) == [0: [.unbind(connection: 2)]])
        // An unknown connection going away changes nothing.
        #expect(t.disconnected(99).isEmpty)
    }

    @Test func anIdentityLearnedLateMovesTheDisk() {
        var t = ThinBindings(vms: ["real-name"])
        #expect(t.connected(5, claim("/q/s.sock", "s", "")).isEmpty)
        let learned = t.connected(5, claim("/q/s.sock", "real-name", uuid))
        #expect(learned[0] == [.bind(connection: 5, claim("/q/s.sock", "real-name", uuid))])
        // The same connection announcing again is told again (its disks re-read).
        #expect(t.connected(5, claim("/q/s.sock", "real-name", uuid))[0] == [.bind(connection: 5, claim("/q/s.sock", "real-name", uuid))])
    }
}
