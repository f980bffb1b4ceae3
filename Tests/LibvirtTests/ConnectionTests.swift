import Foundation
import Libvirt
import Testing

/// Opening, closing and failing connections against a real libvirtd.
@Suite(.serialized, .timeLimit(.minutes(2))) struct ConnectionTests {
    @Test func opensAndSeesTheDaemonAlive() throws {
        let conn = try LibvirtFixture.open()
        defer { conn.close() }
        #expect(conn.isAlive)
        #expect(try conn.domains().allSatisfy { $0.isActive && $0.id >= 0 && $0.uuid == $0.uuid.lowercased() })
    }

    @Test func aWrongURINamesTheURIAndLibvirtsReason() {
        // A driver libvirt does not know, and a daemon socket that is not there.
        for uri in ["nosuchdriver:///system", "qemu+unix:///system?socket=/tmp/vmp-no-such-libvirtd.sock"] {
            do {
                let conn = try LibvirtConnection.open(uri: uri)
                conn.close()
                Issue.record("opening \(uri) succeeded")
            } catch {
                #expect(error.message.contains("'\(uri)'"), "\(error)")
                #expect(error.code > 0, "libvirt's code is kept: \(error)")
                // libvirt's own reason follows ours.
                #expect(error.message.count > "cannot connect to libvirt at '\(uri)': ".count + 5, "\(error)")
            }
        }
    }

    @Test func closeIsIdempotentAndLaterCallsThrowClosed() throws {
        let conn = try LibvirtFixture.open()
        conn.close()
        conn.close()
        #expect(!conn.isAlive)
        do {
            _ = try conn.allDomainStats([.state], noWait: true)
            Issue.record("a call after close succeeded")
        } catch {
            #expect(error.isClosed)
            #expect(!error.isConnectionLost)
            #expect(error.message.contains("closed"), "\(error)")
        }
        #expect(throws: LibvirtError.self) { try conn.state(uuid: "00000000-0000-0000-0000-000000000000") }
        #expect(throws: LibvirtError.self) { try conn.domains() }
    }

    @Test func eventStreamsEndAtClose() async throws {
        let conn = try LibvirtFixture.open()
        let events = conn.events()
        let ended = Task {
            for await _ in events {}
            return true
        }
        conn.close()
        let outcome = try await firstResult(within: .seconds(10)) { await ended.value }
        #expect(outcome == true)
        // A stream asked for after close is already over, with one connectionClosed.
        var late: [LibvirtEvent] = []
        for await event in conn.events() { late.append(event) }
        #expect(late.count == 1)
    }

    @Test func callsFromManyThreadsWhileClosingNeverCrash() throws {
        let conn = try LibvirtFixture.open()
        let tally = Tally()
        let done = DispatchGroup()
        let started = DispatchSemaphore(value: 0)
        for _ in 0..<4 {
            done.enter()
            Thread {
                var closedHere = 0
                for round in 0..<5000 where closedHere < 3 {
                    do throws(LibvirtError) {
                        _ = try conn.allDomainStats([.state, .block], noWait: true)
                        _ = try conn.domains()
                        tally.add(ok: 1)
                    } catch where error.isClosed {
                        tally.add(closed: 1)
                        closedHere += 1
                    } catch {
                        tally.add(other: error.description)
                    }
                    if round == 0 { started.signal() }
                }
                done.leave()
            }.start()
        }
        for _ in 0..<4 { #expect(started.wait(timeout: .now() + 30) == .success) }
        // Every thread is in its loop: close under them.
        conn.close()
        #expect(done.wait(timeout: .now() + 60) == .success)
        let (ok, closed, other) = tally.read()
        #expect(other.isEmpty, "\(other)")
        #expect(ok >= 4, "ok \(ok)")
        #expect(closed == 12, "every thread saw the connection closed: \(closed)")
    }
}

final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private var ok = 0, closed = 0, other: [String] = []
    func add(ok: Int = 0, closed: Int = 0, other: String? = nil) {
        lock.withLock {
            self.ok += ok
            self.closed += closed
            if let other { self.other.append(other) }
        }
    }
    func read() -> (Int, Int, [String]) { lock.withLock { (ok, closed, other) } }
}

/// The value of `body`, or TimedOut after `limit`.
func firstResult<T: Sendable>(within limit: Duration, _ body: @escaping @Sendable () async -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimedOut(description: "nothing within \(limit)")
        }
        defer { group.cancelAll() }
        guard let value = try await group.next() else { throw TimedOut(description: "no result") }
        return value
    }
}
