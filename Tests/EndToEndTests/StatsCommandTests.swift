import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// `vmpulse stats` as a user runs it, against paused guests, on both backends (QEMU's own
/// monitors, and libvirt) where the behaviour is the backend's.
@Suite(.serialized) struct StatsCommandTests {
    let vmpulse = Spawn.builtProduct("vmpulse")

    func withGuests(_ names: [String], _ body: (TestBed, [Guest]) async throws -> Void) async throws {
        try await withGuests(.qmp, names) { bed, guests in
            guard let qmp = bed as? TestBed else { throw TestBedError("not a QMP bed") }
            try await body(qmp, guests)
        }
    }

    func withGuests(_ backend: TestBackend, _ names: [String], _ body: (any GuestBed, [Guest]) async throws -> Void) async throws {
        let bed = try backend.makeBed(prefix: "cli")
        defer { bed.shutdown() }
        var guests: [Guest] = []
        for name in names {
            var spec = GuestSpec(name: name)
            spec.paused = true
            guests.append(try bed.launch(spec))
        }
        try await body(bed, guests)
    }

    func stats(_ bed: any GuestBed, _ args: [String]) throws -> Spawn.Output {
        try Spawn.capture(vmpulse, ["stats"] + bed.statsArguments + args)
    }

    func parse(_ json: String) throws -> [JSONValue] {
        try #require(try JSONParser.parse(Array(json.utf8)).arrayValue)
    }

    @Test(arguments: TestBackend.allCases)
    func printsEveryVMInTheVirshForm(backend: TestBackend) async throws {
        try await withGuests(backend, ["vm1", "vm2"]) { bed, _ in
            // libvirt's first bulk stats after `virsh create --paused` took 3.4 s here (measured
            // 2026-12-07, the same on the commit before the host API): the default 1 s timeout
            // is not what this test is about (DeadlineTests and the fault tests are).
            let out = try stats(bed, ["--timeout", "10"])
            #expect(out.status == 0, "\(out.stderr)")
            let asked = backend == .qmp ? "each QEMU" : "libvirt"
            #expect(out.stdout.hasPrefix("# source: direct (no agent answered; asked \(asked))\nDomain: 'vm1'\n  state.state=3\n  state.reason=1\n"))
            #expect(out.stdout.contains("\n\nDomain: 'vm2'\n"))
            #expect(out.stdout.contains("  block.0.name=\(backend == .qmp ? "drive0" : "vda")\n"))
            #expect(out.stderr.isEmpty)
        }
    }

    @Test(arguments: TestBackend.allCases)
    func jsonHoldsEveryGroupForEveryVM(backend: TestBackend) async throws {
        try await withGuests(backend, ["j1", "j2", "j3"]) { bed, guests in
            let out = try stats(bed, ["--json"])
            #expect(out.status == 0, "\(out.stderr)")
            let records = try parse(out.stdout)
            #expect(records.map { $0["name"]?.stringValue } == ["j1", "j2", "j3"])
            #expect(records.map { $0["uuid"]?.stringValue } == guests.map(\.uuid))
            for record in records {
                let params = try #require(record["params"]?.objectValue)
                // libvirt reports no iothread keys for a domain without I/O threads.
                for key in ["state.state", "state.monitor-response", "cpu.time", "balloon.current", "balloon.maximum", "vcpu.current",
                            "vcpu.0.time", "net.count", "block.count", "block.0.wr.bytes", "block.0.capacity", "io.0.write_bytes"]
                    + (backend == .qmp ? ["iothread.count"] : ["block.0.backingIndex", "vcpu.0.wait"]) {
                    #expect(params[key] != nil, "\(record["name"] ?? .null) lacks \(key)")
                }
                #expect(params["state.monitor-response"] == .int(0))
                #expect(params["block.0.capacity"]?.uint64Value == 256 << 20)
            }
        }
    }

    @Test(arguments: TestBackend.allCases)
    func groupsSelectKeysAndEnforceFailsOnWhatIsNotSupported(backend: TestBackend) async throws {
        // perf is libvirt's (issue 16 brings it to the QMP backend); thin is the agent's own.
        let missing = backend == .qmp ? "perf" : "thin"
        try await withGuests(backend, ["g1"]) { bed, _ in
            let some = try stats(bed, ["--json", "--group", "block,cpu-total"])
            #expect(some.status == 0)
            let params = try #require(try parse(some.stdout).first?["params"]?.objectValue)
            #expect(params.keys.allSatisfy { $0.hasPrefix("block.") || $0.hasPrefix("cpu.") })
            #expect(params["cpu.time"] != nil && params["block.count"] != nil)

            let unsupported = try stats(bed, ["--group", "block,\(missing)", "--enforce"])
            #expect(unsupported.status == 2)
            #expect(unsupported.stdout.isEmpty)
            #expect(unsupported.stderr.contains("does not support the group \(missing)"), "\(unsupported.stderr)")

            let unknown = try stats(bed, ["--group", "bogus", "--enforce"])
            #expect(unknown.status == 2)
            #expect(unknown.stderr.contains("'bogus' is not a stats group"))

            let lenient = try stats(bed, ["--group", "block,\(missing)"])
            #expect(lenient.status == 0)
            #expect(lenient.stdout.contains("block.count=1"))
            #expect(lenient.stderr.contains("left out \(missing)"))
        }
    }

    @Test(arguments: TestBackend.allCases)
    func vmsAreChosenByNameOrUUIDAndAnUnknownOneIsAnError(backend: TestBackend) async throws {
        try await withGuests(backend, ["n1", "n2"]) { bed, guests in
            let byName = try stats(bed, ["--json", "--group", "state", "n2"])
            #expect(try parse(byName.stdout).map { $0["name"]?.stringValue } == ["n2"])
            let byUUID = try stats(bed, ["--json", "--group", "state", guests[0].uuid])
            #expect(try parse(byUUID.stdout).map { $0["name"]?.stringValue } == ["n1"])
            let missing = try stats(bed, ["--group", "state", "nope"])
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("no VM named nope"))
        }
    }

    /// On libvirt, the stuck QEMU holds libvirt's first bulk call (libvirt has no timeout on a
    /// monitor command); the second, sent at half the timeout, skips it.
    @Test(arguments: TestBackend.allCases)
    func aStoppedQEMUIsUnresponsiveWithinTheTimeoutAndTheOthersComplete(backend: TestBackend) async throws {
        try await withGuests(backend, ["s0", "s1", "s2", "stuck"]) { bed, guests in
            let stuck = guests[3]
            stuck.signal(SIGSTOP)
            defer { stuck.signal(SIGCONT) }
            let start = ContinuousClock.now
            let out = try stats(bed, ["--json", "--timeout", "2"])
            let elapsed = ContinuousClock.now - start
            #expect(out.status == 0)
            #expect(elapsed < .milliseconds(3500), "took \(elapsed)")
            let records = try parse(out.stdout)
            #expect(records.count == 4)
            for record in records {
                let params = try #require(record["params"]?.objectValue)
                if record["name"] == "stuck" {
                    #expect(params["state.monitor-response"] == .int(-1))
                    #expect(record["errors"]?.arrayValue?.isEmpty == false)
                } else {
                    #expect(params["state.monitor-response"] == .int(0))
                    #expect(params["block.0.wr.bytes"] != nil && params["balloon.current"] != nil && params["vcpu.current"] != nil)
                    #expect(record["errors"] == nil)
                }
            }
            #expect(out.stderr.contains(backend == .qmp ? "stuck: QEMU did not answer" : "stuck: libvirt skipped the domain's monitor"), "\(out.stderr)")
            // Asked again while the QEMU is still stopped: at once (its lock is held), the same answer.
            let again = ContinuousClock.now
            let second = try stats(bed, ["--json", "--timeout", "2"])
            #expect(ContinuousClock.now - again < .milliseconds(3500))
            #expect(try parse(second.stdout).filter { $0["params"]?["state.monitor-response"] == .int(-1) }.map { $0["name"]?.stringValue } == ["stuck"])
        }
    }

    @Test func aVMWhoseSocketGoesAwayIsDropped() async throws {
        try await withGuests(["d1", "d2", "d3"]) { bed, guests in
            #expect(try parse(try stats(bed, ["--json", "--group", "state"]).stdout).count == 3)
            guests[0].stop()  // QEMU exits and removes its socket
            unlink(guests[1].socketPath)  // the socket is removed under a running QEMU
            let out = try stats(bed, ["--json", "--group", "state"])
            #expect(out.status == 0)
            #expect(try parse(out.stdout).map { $0["name"]?.stringValue } == ["d3"])
        }
    }

    @Test func aMissingSocketDirectoryIsExplained() throws {
        let out = try Spawn.capture(vmpulse, ["stats", "--direct", "--socket-dir", "/nonexistent/qmp"])
        #expect(out.status == 1)
        #expect(out.stderr.contains("cannot read the socket directory /nonexistent/qmp: No such file or directory"))
    }

    @Test func badOptionsAreRefused() throws {
        let out = try Spawn.capture(vmpulse, ["stats", "--direct", "--timeout", "0"])
        #expect(out.status != 0)
        #expect(out.stderr.contains("--timeout must be between 0 and 600 seconds"))
    }
}
