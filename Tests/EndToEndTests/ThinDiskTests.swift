import Foundation
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Thin disks on real guests: a qcow2 image on a loop device, extended by the agent on
/// QEMU's write-threshold event.
@Suite(.serialized) struct ThinDiskTests {
    static let mib: UInt64 = 1 << 20

    struct Setup {
        var bed: TestBed
        var fixture: ThinDiskFixture
        var guest: Guest
        var agent: AgentProcess
    }

    static func thinYAML(vm: String, fixture: ThinDiskFixture, chunkMiB: Int, maxMiB: Int = 1100, backend: String? = nil) -> String {
        let b = backend ?? "backend: loop\n    file: \(fixture.file)"
        return """
            thin_disks:
              - vm: \(vm)
                drive: disk0
                chunk_mib: \(chunkMiB)
                utilization_percent: 20
                max_size_mib: \(maxMiB)
                device: \(fixture.device)
                \(b)
            """
    }

    /// The agent's view of its thin disks.
    static func thin(_ agent: AgentProcess) throws -> [JSONValue] {
        try JSONParser.parse(Array(try HTTPGet.fetch(port: agent.port, path: "/v1/thin").body.utf8)).arrayValue ?? []
    }

    static func waitFor(_ agent: AgentProcess, timeout: Duration = .seconds(30), _ condition: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var last: JSONValue = .null
        while ContinuousClock.now < deadline {
            if let disk = try thin(agent).first {
                last = disk
                if condition(disk) { return disk }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestBedError("the thin disk never reached the expected state; last: \(JSONText.serialize(last))")
    }

    /// Writes `mib` MiB of a random pattern and checks it reads back intact.
    static func writeAndVerify(_ shell: GuestShell, mib: Int) async throws {
        try await shell.check("dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null")
        try await shell.check("i=0; while [ $i -lt \(mib) ]; do cat /tmp/pat; i=$((i+1)); done | dd of=/dev/vda bs=1M iflag=fullblock oflag=direct 2>/dev/null", timeout: .seconds(600))
        let expected = try await shell.check("i=0; while [ $i -lt \(mib) ]; do cat /tmp/pat; i=$((i+1)); done | md5sum")
        let actual = try await shell.check("dd if=/dev/vda bs=1M count=\(mib) iflag=direct 2>/dev/null | md5sum", timeout: .seconds(600))
        #expect(actual.prefix(32) == expected.prefix(32), "the data read back differs")
    }

    /// Counts STOP events on the guest's control monitor while `body` runs.
    static func countingPauses(_ guest: Guest, _ body: () async throws -> Void) async throws -> Int {
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        let counter = Task {
            var stops = 0
            for await event in control.events where event.name == "STOP" { stops += 1 }
            return stops
        }
        try await body()
        await control.close()
        return await counter.value
    }

    @Test func a512MiBWriteIsExtendedAheadOfTheGuestWithoutPausing() async throws {
        let bed = try TestBed(prefix: "thin")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { fixture.detach() }
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     extraYAML: Self.thinYAML(vm: "thin1", fixture: fixture, chunkMiB: 64))
        try await agent.waitReady()
        var spec = GuestSpec(name: "thin1")
        spec.disks = []
        spec.extraArguments = fixture.qemuArguments
        let guest = try bed.launch(spec)
        try await guest.waitReady()
        _ = try await Self.waitFor(agent) { $0["state"]?.stringValue == "set" }
        let shell = try await guest.shell()
        let pauses = try await Self.countingPauses(guest) { try await Self.writeAndVerify(shell, mib: 512) }
        await shell.close()
        let disk = try await Self.waitFor(agent) { $0["state"]?.stringValue == "set" }
        #expect(pauses == 0)
        #expect((disk["extensions"]?.int64Value ?? 0) >= 6, "\(JSONText.serialize(disk))")
        #expect(disk["pauses_recovered"]?.int64Value == 0)
        #expect(fixture.sizeBytes > 512 * Self.mib)
        #expect(fixture.sizeBytes <= 1100 * Self.mib)
        #expect(agent.logText.contains("extended"))
        try await agent.stop()
    }

    /// A command backend: a script that reads the request, waits `delay` seconds, then does
    /// `grow` (a shell fragment with $size, $dev) and exits with `exit`.
    static func script(in dir: String, name: String, delay: String = "0", grow: String, exit code: Int = 0) throws -> String {
        let path = dir + "/" + name
        try """
            #!/bin/sh
            while IFS='=' read -r k v; do
              case "$k" in requested_size) size=$v ;; device) dev=$v ;; esac
            done
            echo "asked to grow $dev to $size"
            sleep \(delay)
            \(grow)
            exit \(code)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    @Test func aChunkTooSmallPausesTheGuestWhichIsResumedWithItsDataIntact() async throws {
        let bed = try TestBed(prefix: "thinsmall")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 16, capacityMiB: 1024)
        defer { fixture.detach() }
        // A slow extension (0.5 s) and a small chunk: the guest outruns it and hits ENOSPC.
        let grow = try Self.script(in: bed.directory, name: "slow-grow", delay: "0.5", grow: "truncate -s $size \(fixture.file) && losetup -c $dev")
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     extraYAML: Self.thinYAML(vm: "thin2", fixture: fixture, chunkMiB: 8,
                                                              backend: "backend: command\n    command: \(grow)\n    command_timeout: 10"))
        try await agent.waitReady()
        var spec = GuestSpec(name: "thin2")
        spec.disks = []
        spec.extraArguments = fixture.qemuArguments
        let guest = try bed.launch(spec)
        try await guest.waitReady()
        let shell = try await guest.shell()
        let pauses = try await Self.countingPauses(guest) { try await Self.writeAndVerify(shell, mib: 64) }
        await shell.close()
        let disk = try await Self.waitFor(agent) { $0["state"]?.stringValue == "set" }
        #expect(pauses > 0, "the guest was never paused: the test does not test recovery")
        #expect((disk["pauses_recovered"]?.int64Value ?? 0) > 0, "\(JSONText.serialize(disk))")
        let status = try await LedgerReading.qemuStatus(guest)
        #expect(status == "running")
        #expect(agent.logText.contains("resumed thin2"))
        try await agent.stop()
    }

    @Test func anAgentStartedAfterTheMarkWasCrossedExtendsAtOnce() async throws {
        let bed = try TestBed(prefix: "thinlate")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { fixture.detach() }
        var spec = GuestSpec(name: "thin3")
        spec.disks = []
        spec.extraArguments = fixture.qemuArguments
        let guest = try bed.launch(spec)
        try await guest.waitReady()
        // No agent: 40 MiB written crosses the mark (64 - 0.8 x 64 = 12.8 MiB) with nobody listening.
        let shell = try await guest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=40 oflag=direct 2>/dev/null")
        await shell.close()
        #expect(fixture.sizeBytes == 64 * Self.mib)
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory,
                                     extraYAML: Self.thinYAML(vm: "thin3", fixture: fixture, chunkMiB: 64))
        try await agent.waitReady()
        let disk = try await Self.waitFor(agent, timeout: .seconds(15)) { ($0["extensions"]?.int64Value ?? 0) >= 1 && $0["state"]?.stringValue == "set" }
        #expect(fixture.sizeBytes == 128 * Self.mib)
        #expect(disk["physical"]?.uint64Value == 128 * Self.mib)
        try await agent.stop()
    }

    @Test func badExtensionsAreVisibleAndTouchNoOtherDisk() async throws {
        let bed = try TestBed(prefix: "thinbad")
        defer { bed.shutdown() }
        var fixtures: [String: ThinDiskFixture] = [:]
        defer { for f in fixtures.values { f.detach() } }
        // Every disk starts at 16 MiB with a 64 MiB chunk: its mark is at 0, so an extension starts at once.
        for name in ["healthy", "fails", "hangs", "lies", "full", "nonode"] {
            fixtures[name] = try ThinDiskFixture(directory: bed.directory, physicalMiB: 16, capacityMiB: 1024)
        }
        func f(_ n: String) -> ThinDiskFixture { fixtures[n]! }
        let failing = try Self.script(in: bed.directory, name: "fail", grow: "echo 'no space left in the volume group' >&2", exit: 1)
        let hanging = try Self.script(in: bed.directory, name: "hang", delay: "100", grow: "true")
        let lying = try Self.script(in: bed.directory, name: "lie", grow: "true")
        func entry(_ vm: String, _ extra: String) -> String {
            "  - vm: \(vm)\n    device: \(f(vm).device)\n    chunk_mib: 64\n" + extra
        }
        let yaml = "thin_disks:\n" + [
            entry("healthy", "    drive: disk0\n    max_size_mib: 1100\n    backend: loop\n    file: \(f("healthy").file)\n"),
            entry("fails", "    drive: disk0\n    max_size_mib: 1100\n    backend: command\n    command: \(failing)\n"),
            entry("hangs", "    drive: disk0\n    max_size_mib: 1100\n    backend: command\n    command: \(hanging)\n    command_timeout: 1\n"),
            entry("lies", "    drive: disk0\n    max_size_mib: 1100\n    backend: command\n    command: \(lying)\n"),
            entry("full", "    drive: disk0\n    max_size_mib: 16\n    backend: loop\n    file: \(f("full").file)\n"),
            entry("nonode", "    node: nosuchnode\n    max_size_mib: 1100\n    backend: loop\n    file: \(f("nonode").file)\n"),
        ].joined()
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory, extraYAML: yaml)
        try await agent.waitReady()
        var guests: [String: Guest] = [:]
        for name in fixtures.keys.sorted() {
            var spec = GuestSpec(name: name)
            spec.paused = true
            spec.disks = []
            spec.extraArguments = f(name).qemuArguments
            guests[name] = try bed.launch(spec)
        }
        func disk(_ vm: String) throws -> JSONValue? { try Self.thin(agent).first { $0["vm"]?.stringValue == vm } }
        func waitDisk(_ vm: String, _ condition: (JSONValue) -> Bool) async throws -> JSONValue {
            for _ in 0..<150 {
                if let d = try disk(vm), condition(d) { return d }
                try await Task.sleep(for: .milliseconds(200))
            }
            throw TestBedError("\(vm): never reached the expected state: \(JSONText.serialize(try disk(vm) ?? .null))")
        }
        func reason(_ d: JSONValue) -> String { d["reason"]?.stringValue ?? "" }

        let healthy = try await waitDisk("healthy") { $0["state"]?.stringValue == "set" && $0["extensions"]?.int64Value == 1 }
        #expect(healthy["physical"]?.uint64Value == 80 * Self.mib)
        #expect(f("healthy").sizeBytes == 80 * Self.mib)

        let fails = try await waitDisk("fails") { $0["state"]?.stringValue == "backoff" }
        #expect(reason(fails).contains("failed") && reason(fails).contains("no space left in the volume group"), "\(reason(fails))")
        let hangs = try await waitDisk("hangs") { $0["state"]?.stringValue == "backoff" }
        #expect(reason(hangs).contains("did not finish within"), "\(reason(hangs))")
        let lies = try await waitDisk("lies") { $0["state"]?.stringValue == "backoff" }
        #expect(reason(lies).contains("reported success but the device still has"), "\(reason(lies))")
        let full = try await waitDisk("full") { $0["state"]?.stringValue == "disabled" }
        #expect(reason(full).contains("maximum size"))
        let nonode = try await waitDisk("nonode") { $0["state"]?.stringValue == "disabled" }
        #expect(reason(nonode).contains("has no node 'nosuchnode'"), "\(reason(nonode))")
        // Failures are retried with backoff: the failure count grows.
        _ = try await waitDisk("fails") { ($0["failures"]?.int64Value ?? 0) >= 2 }
        // The hanging program is killed with its children at each timeout: at most the
        // current retry's is alive, none piles up.
        #expect(try Spawn.capture("/usr/bin/pgrep", ["-f", "sleep 100"]).stdout.split(separator: "\n").count <= 1)
        // None of this touched the healthy disk, and the agent still serves.
        #expect(try disk("healthy")?["extensions"]?.int64Value == 1)
        #expect(f("full").sizeBytes == 16 * Self.mib && f("nonode").sizeBytes == 16 * Self.mib && f("lies").sizeBytes == 16 * Self.mib)

        // A VM that goes away: its disk waits, nothing else changes.
        guests["fails"]?.stop()
        let gone = try await waitDisk("fails") { $0["state"]?.stringValue == "unset" }
        #expect(reason(gone).contains("not connected"))
        #expect(try agent.health().status == 200)
        #expect(try disk("healthy")?["state"]?.stringValue == "set")
        try await agent.stop()
        #expect(try Spawn.capture("/usr/bin/pgrep", ["-f", "sleep 100"]).stdout.isEmpty, "an extension program outlived the agent")
    }
}
