import Testing
import VMPulseCore

@Suite struct LedgerKeysTests {
    let uuid = "0b6f6c1e-3c1a-4d5e-9a43-6f2d1c0e7a55"

    @Test func aVMAloneIsKeyedByItsUUIDOrItsName() {
        var keys = LedgerKeys()
        keys.update(socket: "/q/web1.sock", claim: LedgerKeys.claim(name: "web1", uuid: uuid))
        keys.update(socket: "/q/old.sock", claim: LedgerKeys.claim(name: "old", uuid: "00000000-0000-0000-0000-000000000000"))
        keys.update(socket: "/q/bare.sock", claim: LedgerKeys.claim(name: "bare", uuid: ""))
        #expect(keys.key(for: "/q/web1.sock") == uuid)
        #expect(keys.key(for: "/q/old.sock") == "name:old")
        #expect(keys.key(for: "/q/bare.sock") == "name:bare")
        #expect(keys.conflicts.isEmpty)
    }

    @Test func nothingIsKeyedBeforeTheIdentityIsKnown() {
        var keys = LedgerKeys()
        keys.update(socket: "/q/a.sock", claim: nil)
        #expect(keys.key(for: "/q/a.sock") == nil)
        #expect(keys.key(for: "/q/never.sock") == nil)
    }

    @Test func twoVMsWithOneUUIDAreKeyedApartAndReported() {
        var keys = LedgerKeys()
        keys.update(socket: "/q/a.sock", claim: uuid)
        #expect(keys.key(for: "/q/a.sock") == uuid)
        keys.update(socket: "/q/b.sock", claim: uuid)
        let a = keys.key(for: "/q/a.sock"), b = keys.key(for: "/q/b.sock")
        #expect(a == uuid + "/a.sock")
        #expect(b == uuid + "/b.sock")
        #expect(keys.conflicts == [LedgerKeys.Conflict(claim: uuid, sockets: ["/q/a.sock", "/q/b.sock"])])
        #expect(keys.conflict(for: "/q/b.sock")?.description.contains("/q/a.sock, /q/b.sock") == true)
        // One goes: the other has the UUID to itself again.
        keys.remove(socket: "/q/b.sock")
        #expect(keys.key(for: "/q/a.sock") == uuid)
        #expect(keys.conflicts.isEmpty)
    }

    @Test func twoVMsWithOneNameAndNoUUIDConflictToo() {
        var keys = LedgerKeys()
        for s in ["/q/x.sock", "/q/y.sock", "/q/z.sock"] { keys.update(socket: s, claim: LedgerKeys.claim(name: "db", uuid: "")) }
        let all = Set(["/q/x.sock", "/q/y.sock", "/q/z.sock"].compactMap { keys.key(for: $0) })
        #expect(all.count == 3)
        #expect(keys.conflicts.first?.description.contains("the name db and no UUID") == true)
    }

    @Test func aVMWhoseClaimChangesLeavesTheConflict() {
        var keys = LedgerKeys()
        keys.update(socket: "/q/a.sock", claim: uuid)
        keys.update(socket: "/q/b.sock", claim: uuid)
        keys.update(socket: "/q/b.sock", claim: "other")
        #expect(keys.key(for: "/q/a.sock") == uuid)
        #expect(keys.key(for: "/q/b.sock") == "other")
        #expect(keys.conflicts.isEmpty)
    }
}

@Suite struct LedgerKeysEscapingTests {
    /// A VM named `web/b.sock` must not get the key of the VM `web` on `b.sock`.
    @Test func aSlashInANameCannotForgeAQualifiedKey() {
        var keys = LedgerKeys()
        keys.update(socket: "/q/a.sock", claim: LedgerKeys.claim(name: "web", uuid: ""))
        keys.update(socket: "/q/b.sock", claim: LedgerKeys.claim(name: "web", uuid: ""))
        keys.update(socket: "/q/c.sock", claim: LedgerKeys.claim(name: "web/b.sock", uuid: ""))
        let all = ["/q/a.sock", "/q/b.sock", "/q/c.sock"].compactMap { keys.key(for: $0) }
        #expect(Set(all).count == 3)
        #expect(keys.key(for: "/q/c.sock") == "name:web%2Fb.sock")
        #expect(LedgerKeys.claim(name: "50%/x", uuid: "") == "name:50%25%2Fx")
    }
}
