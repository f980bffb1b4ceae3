import Agent
import Crypto
import Foundation
import Testing
import VMPulseCore

/// The heartbeat frame: its signature, its shape, and the verifier that takes each frame once.
@Suite struct PulseFrameTests {
    let key = PulseKey(bytes: Array(repeating: UInt8(7), count: 32))
    let now = 1_800_000_000.0

    func frame(_ seq: UInt64, incarnation: UInt64 = 5, sender: String = "host-b", at time: Double? = nil) -> PulseFrame {
        PulseFrame(kind: .pulse, sender: sender, incarnation: incarnation, sequence: seq, timestamp: UInt64((time ?? now) * 1e9))
    }

    @Test func aFrameRoundTripsWithItsFields() throws {
        let notice = PulseFrame(kind: .notice, sender: "host-a", incarnation: .max, sequence: .max, timestamp: UInt64(now * 1e9), subject: "db-guest", state: .dead)
        let bytes = notice.encoded(key: key)
        #expect(bytes.count == PulseFrame.size)
        #expect(try PulseFrame.decode(bytes, key: key) == notice)
    }

    @Test func anotherKeyOrAnyChangedByteIsForged() throws {
        let bytes = frame(1).encoded(key: key)
        #expect(throws: PulseError.forged) { try PulseFrame.decode(bytes, key: PulseKey(bytes: Array(repeating: UInt8(8), count: 32))) }
        for i in stride(from: 5, to: PulseFrame.size, by: 7) {
            var changed = bytes
            changed[i] ^= 0x01
            #expect(throws: PulseError.forged, "byte \(i)") { try PulseFrame.decode(changed, key: key) }
        }
    }

    @Test func garbageIsRefusedByShapeBeforeAnythingIsRead() throws {
        #expect(throws: PulseError.truncated(count: 5)) { try PulseFrame.decode(Array("hello".utf8), key: key) }
        #expect(throws: PulseError.notAPulse) { try PulseFrame.decode([UInt8](repeating: 0xFF, count: PulseFrame.size), key: key) }
        var v2 = frame(1).encoded(key: key)
        v2[4] = 2
        #expect(throws: PulseError.version(2)) { try PulseFrame.decode(v2, key: key) }
    }

    @Test func aSignedFrameThatMakesNoSenseIsMalformed() throws {
        // Signed with the right key (a peer with the key but a bug): each field is still checked.
        func resign(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
            var b = frame(1).encoded(key: key)
            change(&b)
            let mac = HMAC<SHA256>.authenticationCode(for: b[0..<96], using: SymmetricKey(data: key.bytes))
            b.replaceSubrange(96..<128, with: Array(mac))
            return b
        }
        #expect(throws: PulseError.malformed("kind 9 is neither a pulse (1) nor a notice (2)")) { try PulseFrame.decode(resign { $0[5] = 9 }, key: key) }
        #expect(throws: PulseError.malformed("state 3 is not 0, 1 or 2")) { try PulseFrame.decode(resign { $0[6] = 3 }, key: key) }
        #expect(throws: PulseError.malformed("the sender's name is not UTF-8 text")) { try PulseFrame.decode(resign { $0[8] = 0xC3; $0[9] = 0x28 }, key: key) }
        #expect(throws: PulseError.malformed("the sender's name is not UTF-8 text")) { try PulseFrame.decode(resign { b in for i in 8..<40 { b[i] = 0 } }, key: key) }
        #expect(throws: PulseError.malformed("the subject is not UTF-8 text")) { try PulseFrame.decode(resign { $0[64] = 0; $0[65] = 0x41 }, key: key) }
    }

    @Test func replaysOldRunsAndSkewedClocksAreRefused() throws {
        var v = PulseVerifier(peer: "host-b", maxSkew: 30)
        try v.accept(frame(1), now: now)
        try v.accept(frame(2), now: now)
        #expect(throws: PulseError.replayed(sequence: 2)) { try v.accept(frame(2), now: now) }
        #expect(throws: PulseError.replayed(sequence: 1)) { try v.accept(frame(1), now: now) }
        try v.accept(frame(1, incarnation: 6), now: now)  // the peer restarted: its sequence starts again
        #expect(throws: PulseError.staleIncarnation) { try v.accept(frame(3, incarnation: 5), now: now) }
        #expect(throws: PulseError.skewed(seconds: -31)) { try v.accept(frame(9, incarnation: 6, at: now - 31), now: now) }
        #expect(throws: PulseError.skewed(seconds: 3600)) { try v.accept(frame(9, incarnation: 6, at: now + 3600), now: now) }
        #expect(throws: PulseError.wrongSender("host-c")) { try v.accept(frame(9, incarnation: 6, sender: "host-c"), now: now) }
        try v.accept(frame(2, incarnation: 6), now: now)
        // Numbers at the top of their range: no trap, and nothing after them is taken.
        try v.accept(frame(.max, incarnation: 6), now: now)
        #expect(throws: PulseError.replayed(sequence: .max)) { try v.accept(frame(.max, incarnation: 6), now: now) }
        try v.accept(frame(1, incarnation: .max), now: now)
        #expect(throws: PulseError.skewed(seconds: -now)) { try v.accept(PulseFrame(kind: .pulse, sender: "host-b", incarnation: .max, sequence: 2, timestamp: 0), now: now) }
        var w = PulseVerifier(peer: "host-b", maxSkew: 30)
        #expect(throws: PulseError.self) { try w.accept(PulseFrame(kind: .pulse, sender: "host-b", incarnation: 1, sequence: 1, timestamp: .max), now: now) }
    }

    @Test func theKeyFileMustBeLongEnoughAndPrivate() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vmpulse-key-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/key"
        #expect(throws: ConfigError.self) { try HeartbeatKey.load(path: path) }  // missing
        func write(_ bytes: [UInt8], mode: Int) throws {
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        }
        try write(Array(repeating: 65, count: 31) + [10], mode: 0o600)
        do {
            _ = try HeartbeatKey.load(path: path)
            Issue.record("a 31-byte key was taken")
        } catch {
            #expect(error.message.contains("holds 31 bytes; a key needs at least 32"))
        }
        try write(Array(repeating: 65, count: 32), mode: 0o644)
        do {
            _ = try HeartbeatKey.load(path: path)
            Issue.record("a key others can read was taken")
        } catch {
            #expect(error.message.contains("chmod 600"))
        }
        try write(Array(repeating: 65, count: 32) + [10], mode: 0o600)
        let k = try HeartbeatKey.load(path: path)
        #expect(k.bytes.count == 32, "the trailing newline is not part of the key")
    }
}
