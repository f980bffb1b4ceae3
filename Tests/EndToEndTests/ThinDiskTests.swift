import Foundation
import Glibc
import QMP
import Testing
import VMPulseCore
import VMPulseTestSupport

/// Thin disks on real guests: a qcow2 image on a loop device, extended by a real agent on
/// QEMU's write-threshold event.
@Suite(.serialized) struct ThinDiskTests {
    static let mib: UInt64 = 1 << 20

    static func thinYAML(vm: String, fixture: ThinDiskFixture, chunkMiB: Int, maxMiB: Int = 1100, backend: String? = nil,
                         drive: String = "disk0") -> String {
        let b = backend ?? "backend: loop\n    file: \(fixture.file)"
        return """
            thin_disks:
              - vm: \(vm)
                drive: \(drive)
                chunk_mib: \(chunkMiB)
                utilization_percent: 20
                max_size_mib: \(maxMiB)
                device: \(fixture.device)
                \(b)
            """
    }

    static func agent(_ bed: any GuestBed, yaml: String) throws -> AgentProcess {
        try bed.agent(extraYAML: yaml)
    }

    /// The thin disk's name: the drive id of ThinDiskFixture's QEMU disk, or libvirt's target.
    static func drive(_ backend: TestBackend) -> String { backend == .qmp ? "disk0" : "vda" }

    /// The node the mark goes on: the protocol node QEMU names, or libvirt's `vda[1]`.
    static func markNode(_ backend: TestBackend) -> String { backend == .qmp ? "proto0" : "vda[1]" }

    /// The agent's view of its thin disks (`GET /v1/thin`).
    static func disks(_ agent: AgentProcess) throws -> [JSONValue] {
        try JSONParser.parse(Array(try HTTPGet.fetch(port: agent.port, path: "/v1/thin").body.utf8)).arrayValue ?? []
    }

    /// Waits until the disk of `vm` (or the only disk) meets `condition`.
    static func waitDisk(_ agent: AgentProcess, vm: String? = nil, timeout: Duration = .seconds(30), _ condition: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var last: JSONValue = .null
        while ContinuousClock.now < deadline {
            if let disk = try disks(agent).first(where: { vm == nil || $0["vm"]?.stringValue == vm }) {
                last = disk
                if condition(disk) { return disk }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestBedError("\(vm ?? "the thin disk") never reached the expected state; last: \(JSONText.serialize(last))")
    }

    static func state(_ name: String) -> (JSONValue) -> Bool { { $0["state"]?.stringValue == name } }
    static func reason(_ d: JSONValue) -> String { d["reason"]?.stringValue ?? "" }

    /// Writes `mib` MiB of a random pattern and checks it reads back intact.
    static func writeAndVerify(_ shell: GuestShell, mib: Int) async throws {
        try await shell.check("dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null")
        try await shell.check("i=0; while [ $i -lt \(mib) ]; do cat /tmp/pat; i=$((i+1)); done | dd of=/dev/vda bs=1M iflag=fullblock oflag=direct 2>/dev/null", timeout: .seconds(600))
        let expected = try await shell.check("i=0; while [ $i -lt \(mib) ]; do cat /tmp/pat; i=$((i+1)); done | md5sum")
        let actual = try await shell.check("dd if=/dev/vda bs=1M count=\(mib) iflag=direct 2>/dev/null | md5sum", timeout: .seconds(600))
        #expect(actual.prefix(32) == expected.prefix(32), "the data read back differs")
    }

    /// Counts the guest's pauses while `body` runs, with the test's own tools: STOP events on
    /// the control monitor, or libvirt's lifecycle events (`virsh event`) for a libvirt guest.
    static func countingPauses(_ guest: Guest, _ body: () async throws -> Void) async throws -> Int {
        if let uri = guest.libvirtURI {
            let log = guest.directory + "/events-\(UInt32.random(in: 0...UInt32.max)).log"
            let pid = try Spawn.start("/usr/bin/virsh", ["-c", uri, "event", guest.name, "--event", "lifecycle", "--loop", "--timeout", "900"],
                                      outputPath: log)
            try await Task.sleep(for: .milliseconds(500))  // registered before the workload starts
            do {
                try await body()
            } catch {
                kill(pid, SIGTERM)
                _ = Spawn.exited(pid)
                throw error
            }
            try await Task.sleep(for: .milliseconds(500))
            kill(pid, SIGTERM)
            for _ in 0..<50 where Spawn.exited(pid) == nil { try await Task.sleep(for: .milliseconds(20)) }
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").filter { $0.contains("Suspended") }.count
        }
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

    /// Whether the guest runs, as its hypervisor says (QEMU's status, or libvirt's state).
    static func isRunning(_ guest: Guest) async throws -> Bool {
        if let uri = guest.libvirtURI {
            let out = try Spawn.capture("/usr/bin/virsh", ["-q", "-c", uri, "domstate", guest.name])
            return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "running"
        }
        return try await LedgerReading.qemuStatus(guest) == "running"
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

    /// `vmpulse stats` through the agent, as `key -> value` of the text form.
    static func cliStats(_ agent: AgentProcess, _ arguments: [String]) throws -> [String: String] {
        let out = try Spawn.capture(Spawn.builtProduct("vmpulse"), ["stats", "--agent", agent.address] + arguments)
        guard out.status == 0 else { throw TestBedError("vmpulse stats exited \(out.status): \(out.stderr)") }
        var values: [String: String] = [:]
        for line in out.stdout.split(separator: "\n") where line.hasPrefix("  ") {
            let parts = line.dropFirst(2).split(separator: "=", maxSplits: 1)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        return values
    }

    @Test(arguments: TestBackend.allCases)
    func a512MiBWriteIsExtendedAheadOfTheGuestWithoutPausing(backend: TestBackend) async throws {
        let bed = try backend.makeBed(prefix: "thin")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { fixture.detach() }
        let agent = try Self.agent(bed, yaml: Self.thinYAML(vm: "thin1", fixture: fixture, chunkMiB: 64, drive: Self.drive(backend)))
        try await agent.waitReady()
        let guest = try bed.launch(fixture.guest(named: "thin1"))
        try await guest.waitReady()
        let armed = try await Self.waitDisk(agent, Self.state("set"))
        // 64 MiB device, 64 MiB chunk, 20 %: the mark 51.2 MiB below the end, on the protocol node.
        #expect(armed["threshold"]?.uint64Value == 64 * Self.mib - 64 * Self.mib * 8 / 10)
        #expect(armed["node"]?.stringValue == Self.markNode(backend))

        // The CLI shows the thin group, and the block group shows the same mark QEMU has.
        let shown = try Self.cliStats(agent, ["--group", "block,thin", "thin1"])
        #expect(shown["thin.count"] == "1")
        #expect(shown["thin.0.state"] == "set")
        #expect(shown["thin.0.name"] == Self.drive(backend))
        #expect(shown["thin.0.threshold"] == "\(64 * Self.mib - 64 * Self.mib * 8 / 10)")
        try await Task.sleep(for: .seconds(6))  // the block group comes from the full pass (every 5 s here)
        #expect(try Self.cliStats(agent, ["--group", "block", "thin1"])["block.0.threshold"] == shown["thin.0.threshold"])

        let shell = try await guest.shell()
        let pauses = try await Self.countingPauses(guest) { try await Self.writeAndVerify(shell, mib: 512) }
        await shell.close()
        let disk = try await Self.waitDisk(agent, Self.state("set"))
        #expect(pauses == 0)
        #expect((disk["extensions"]?.int64Value ?? 0) >= 6, "\(JSONText.serialize(disk))")
        #expect(disk["pauses_recovered"]?.int64Value == 0)
        #expect(disk["failures"]?.int64Value == 0)
        #expect(fixture.sizeBytes > 512 * Self.mib)
        #expect(fixture.sizeBytes <= 1100 * Self.mib)
        #expect(disk["physical"]?.uint64Value == fixture.sizeBytes)
        // Every extension came from an event and led to a new mark.
        #expect(disk["recent_cycles_ms"]?.arrayValue?.count == Int(disk["extensions"]?.int64Value ?? -1))
        #expect(agent.logText.contains("thin disk thin1/\(Self.drive(backend)): extended"))
        #expect(try await agent.stop() == 0)
    }

    @Test(arguments: TestBackend.allCases)
    func aChunkTooSmallPausesTheGuestWhichIsResumedWithItsDataIntact(backend: TestBackend) async throws {
        let bed = try backend.makeBed(prefix: "thinsmall")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 16, capacityMiB: 1024)
        defer { fixture.detach() }
        // Storage that takes 0.5 s to grow and an 8 MiB chunk: the guest outruns it and
        // hits the end of the device. (The loop backend grows in well under a millisecond,
        // too fast for the test guest to outrun on purpose.)
        let grow = try Self.script(in: bed.directory, name: "slow-grow", delay: "0.5", grow: "truncate -s $size \(fixture.file) && losetup -c $dev")
        let agent = try Self.agent(bed, yaml: Self.thinYAML(vm: "thin2", fixture: fixture, chunkMiB: 8,
                                                            backend: "backend: command\n    command: \(grow)\n    command_timeout: 10",
                                                            drive: Self.drive(backend)))
        try await agent.waitReady()
        let guest = try bed.launch(fixture.guest(named: "thin2"))
        try await guest.waitReady()
        let shell = try await guest.shell()
        let pauses = try await Self.countingPauses(guest) { try await Self.writeAndVerify(shell, mib: 64) }
        await shell.close()
        let disk = try await Self.waitDisk(agent, Self.state("set"))
        #expect(pauses > 0, "the guest was never paused: the test does not test recovery")
        #expect(disk["pauses_recovered"]?.int64Value == Int64(pauses), "\(pauses) pauses; \(JSONText.serialize(disk))")
        #expect(disk["paused"]?.boolValue == false)
        #expect(try await Self.isRunning(guest))
        #expect(agent.logText.contains("resumed thin2"))
        #expect(try await agent.stop() == 0)
    }

    @Test func thePollingFallbackExtendsWithoutActingOnTheEvent() async throws {
        let bed = try TestBed(prefix: "thinpoll")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { fixture.detach() }
        // Polling mode takes the event only as the time of the crossing: only a poll extends.
        let agent = try Self.agent(bed, yaml: "thin:\n  polling_interval: 0.5\n" + Self.thinYAML(vm: "thin6", fixture: fixture, chunkMiB: 64))
        try await agent.waitReady()
        let guest = try bed.launch(fixture.guest(named: "thin6"))
        try await guest.waitReady()
        _ = try await Self.waitDisk(agent, Self.state("set"))
        let shell = try await guest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=20 oflag=direct 2>/dev/null")  // past the 12.8 MiB mark, not the end
        await shell.close()
        let disk = try await Self.waitDisk(agent, timeout: .seconds(10)) { $0["extensions"]?.int64Value == 1 && $0["state"]?.stringValue == "set" }
        #expect(fixture.sizeBytes == 128 * Self.mib)
        #expect(disk["pauses_recovered"]?.int64Value == 0)
        // The cycle is timed from the crossing the event reported to the mark the poll set.
        #expect(disk["recent_cycles_ms"]?.arrayValue?.count == 1)
        #expect(try await agent.stop() == 0)
    }

    @Test func aGuestPausedForAnotherReasonIsLeftAlone() async throws {
        let bed = try TestBed(prefix: "thinstop")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { fixture.detach() }
        // Storage that takes 2 s to grow, so that an operator can pause the guest meanwhile.
        let slow = try Self.script(in: bed.directory, name: "slow", delay: "2", grow: "truncate -s $size \(fixture.file) && losetup -c $dev")
        let agent = try Self.agent(bed, yaml: Self.thinYAML(vm: "thin5", fixture: fixture, chunkMiB: 64, backend: "backend: command\n    command: \(slow)"))
        try await agent.waitReady()
        let guest = try bed.launch(fixture.guest(named: "thin5"))
        try await guest.waitReady()
        _ = try await Self.waitDisk(agent, Self.state("set"))
        let shell = try await guest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=20 oflag=direct 2>/dev/null")
        await shell.close()
        _ = try await Self.waitDisk(agent, Self.state("extending"))
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        _ = try await control.execute("stop")
        let disk = try await Self.waitDisk(agent) { ($0["extensions"]?.int64Value ?? 0) == 1 && $0["state"]?.stringValue == "set" }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await control.execute("query-status")["status"]?.stringValue == "paused", "the agent resumed a guest an operator paused")
        #expect(disk["pauses_recovered"]?.int64Value == 0)
        await control.close()
        #expect(try await agent.stop() == 0)
    }

    @Test func anAgentStartedAfterTheMarkWasCrossedOrTheGuestPausedActsAtOnce() async throws {
        let bed = try TestBed(prefix: "thinlate")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { fixture.detach() }
        let guest = try bed.launch(fixture.guest(named: "thin3"))
        try await guest.waitReady()
        // No agent: 40 MiB written crosses the mark (64 - 0.8 x 64 = 12.8 MiB) with nobody listening.
        let shell = try await guest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=40 oflag=direct 2>/dev/null")
        await shell.close()
        #expect(fixture.sizeBytes == 64 * Self.mib)
        let agent = try Self.agent(bed, yaml: Self.thinYAML(vm: "thin3", fixture: fixture, chunkMiB: 64))
        try await agent.waitReady()
        let disk = try await Self.waitDisk(agent, timeout: .seconds(15)) { ($0["extensions"]?.int64Value ?? 0) >= 1 && $0["state"]?.stringValue == "set" }
        #expect(fixture.sizeBytes == 128 * Self.mib)
        #expect(disk["physical"]?.uint64Value == 128 * Self.mib)
        #expect(disk["extensions"]?.int64Value == 1)

        // Stopped again; the guest crosses the new mark (128 - 51.2 = 76.8 MiB); started
        // again: it extends at once, from what it reads, not from an event it never saw.
        #expect(try await agent.stop() == 0)
        let again = try await guest.shell()
        try await again.check("dd if=/dev/zero of=/dev/vda bs=1M count=40 seek=40 oflag=direct 2>/dev/null")
        await again.close()
        #expect(fixture.sizeBytes == 128 * Self.mib)
        try agent.start()
        try await agent.waitReady()
        _ = try await Self.waitDisk(agent, timeout: .seconds(15)) { $0["physical"]?.uint64Value == 192 * Self.mib && $0["state"]?.stringValue == "set" }
        #expect(fixture.sizeBytes == 192 * Self.mib)

        // Stopped once more; the guest fills the device and QEMU pauses it on ENOSPC with
        // nobody listening. Started again: the agent finds the pause in QEMU's io-status,
        // extends, and resumes the guest.
        #expect(try await agent.stop() == 0)
        let filler = try await guest.shell()
        try await filler.check("dd if=/dev/zero of=/dev/vda bs=1M count=150 seek=80 oflag=direct >/dev/null 2>&1 &")
        let control = try await QMPClient.connect(socketPath: guest.controlSocket)
        var status = ""
        for _ in 0..<600 where status != "io-error" {
            try await Task.sleep(for: .milliseconds(100))
            status = try await control.execute("query-status")["status"]?.stringValue ?? ""
        }
        #expect(status == "io-error", "the guest never ran out of space")
        try agent.start()
        try await agent.waitReady()
        let resumed = try await Self.waitDisk(agent, timeout: .seconds(15)) { $0["pauses_recovered"]?.int64Value == 1 && $0["state"]?.stringValue == "set" }
        #expect(resumed["paused"]?.boolValue == false)
        #expect(fixture.sizeBytes > 192 * Self.mib)
        #expect(try await control.execute("query-status")["status"]?.stringValue == "running")
        await control.close()
        await filler.close()
        #expect(try await agent.stop() == 0)
    }

    @Test func badExtensionsAreVisibleAndTouchNoOtherDisk() async throws {
        let bed = try TestBed(prefix: "thinbad")
        defer { bed.shutdown() }
        var fixtures: [String: ThinDiskFixture] = [:]
        defer { for f in fixtures.values { f.detach() } }
        // Every disk starts at 16 MiB with a 64 MiB chunk: its mark would be below 0, so an
        // extension starts as soon as the agent sees the VM.
        let names = ["fails", "full", "hangs", "healthy", "lies", "nonode"]
        for name in names {
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
            entry("fails", "    drive: disk0\n    max_size_mib: 1100\n    backend: command\n    command: \(failing)\n"),
            entry("full", "    drive: disk0\n    max_size_mib: 16\n    backend: loop\n    file: \(f("full").file)\n"),
            entry("hangs", "    drive: disk0\n    max_size_mib: 1100\n    backend: command\n    command: \(hanging)\n    command_timeout: 12\n"),
            entry("healthy", "    drive: disk0\n    max_size_mib: 1100\n    backend: loop\n    file: \(f("healthy").file)\n"),
            entry("lies", "    drive: disk0\n    max_size_mib: 1100\n    backend: command\n    command: \(lying)\n"),
            entry("nonode", "    node: nosuchnode\n    max_size_mib: 1100\n    backend: loop\n    file: \(f("nonode").file)\n"),
        ].joined()
        let agent = try Self.agent(bed, yaml: yaml)
        try await agent.waitReady()
        var guests: [String: Guest] = [:]
        // The hanging disk's VM first: its extension must not hold up the others.
        for name in names { guests[name] = try bed.launch(f(name).guest(named: name, paused: true)) }
        let started = ContinuousClock.now

        let healthy = try await Self.waitDisk(agent, vm: "healthy", timeout: .seconds(10)) { $0["state"]?.stringValue == "set" && $0["extensions"]?.int64Value == 1 }
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(healthy["physical"]?.uint64Value == 80 * Self.mib)
        #expect(f("healthy").sizeBytes == 80 * Self.mib)
        #expect(try Self.disks(agent).first { $0["vm"]?.stringValue == "hangs" }?["state"]?.stringValue == "extending",
                "the hanging program should still be running while the healthy disk is done")

        let fails = try await Self.waitDisk(agent, vm: "fails", Self.state("backoff"))
        #expect(Self.reason(fails).contains("failed") && Self.reason(fails).contains("no space left in the volume group"), "\(Self.reason(fails))")
        let lies = try await Self.waitDisk(agent, vm: "lies", Self.state("backoff"))
        #expect(Self.reason(lies).contains("reported success but the device still has"), "\(Self.reason(lies))")
        let full = try await Self.waitDisk(agent, vm: "full", Self.state("disabled"))
        #expect(Self.reason(full).contains("maximum size"))
        let nonode = try await Self.waitDisk(agent, vm: "nonode", Self.state("disabled"))
        #expect(Self.reason(nonode).contains("has no node 'nosuchnode'"), "\(Self.reason(nonode))")
        let hangs = try await Self.waitDisk(agent, vm: "hangs", Self.state("backoff"))
        #expect(Self.reason(hangs).contains("did not finish within"), "\(Self.reason(hangs))")
        // Failures are retried with backoff: the failure count grows.
        _ = try await Self.waitDisk(agent, vm: "fails") { ($0["failures"]?.int64Value ?? 0) >= 3 }
        // The hanging program was killed with its children at its timeout.
        #expect(try Spawn.capture("/usr/bin/pgrep", ["-f", "sleep 100"]).stdout.split(separator: "\n").count <= 1)
        // None of this touched the healthy disk, and the agent still serves.
        #expect(try Self.disks(agent).first { $0["vm"]?.stringValue == "healthy" }?["extensions"]?.int64Value == 1)
        #expect(f("full").sizeBytes == 16 * Self.mib && f("nonode").sizeBytes == 16 * Self.mib && f("lies").sizeBytes == 16 * Self.mib)
        #expect(agent.logText.contains("thin disk fails/disk0: extension to"))

        // A VM that goes away: its disk waits, nothing else changes.
        guests["fails"]?.stop()
        let gone = try await Self.waitDisk(agent, vm: "fails", Self.state("unset"))
        #expect(Self.reason(gone).contains("not connected"))
        // The disks that cannot work degrade the agent's health, each named; a disk whose VM
        // is gone, a healthy one and one at its maximum (its guest not paused) do not.
        let health = try agent.health()
        #expect(health.status == 503)
        let named = Set((health.body["thin_problems"]?.arrayValue ?? []).compactMap { $0["disk"]?.stringValue })
        #expect(named.isSuperset(of: ["lies/disk0", "nonode/nosuchnode"]) && named.isDisjoint(with: ["fails/disk0", "healthy/disk0", "full/disk0"]), "\(named)")
        #expect(try Self.disks(agent).first { $0["vm"]?.stringValue == "healthy" }?["state"]?.stringValue == "set")

        // SIGTERM while the hanging program runs again: the agent waits its grace (10 s),
        // kills the program with its group, and exits cleanly.
        _ = try await Self.waitDisk(agent, vm: "hangs", Self.state("extending"))
        let stopping = ContinuousClock.now
        #expect(try await agent.stop() == 0)
        #expect(ContinuousClock.now - stopping < .seconds(15))
        #expect(agent.logText.contains("an extension is still running"))
        #expect(try Spawn.capture("/usr/bin/pgrep", ["-f", "sleep 100"]).stdout.isEmpty, "an extension program outlived the agent")
    }

    @Test func aThresholdEventForAVMThatHasGoneAway() async throws {
        let bed = try TestBed(prefix: "thingone")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { fixture.detach() }
        let other = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { other.detach() }
        // Storage that takes 3 s to grow: the VM dies while the event is being handled.
        let slow = try Self.script(in: bed.directory, name: "slow", delay: "3", grow: "truncate -s $size \(fixture.file) && losetup -c $dev")
        let yaml = Self.thinYAML(vm: "vanish", fixture: fixture, chunkMiB: 64, backend: "backend: command\n    command: \(slow)")
            + "\n  - vm: steady\n    drive: disk0\n    chunk_mib: 64\n    max_size_mib: 1100\n    device: \(other.device)\n    backend: loop\n    file: \(other.file)\n"
        let agent = try Self.agent(bed, yaml: yaml)
        try await agent.waitReady()
        let guest = try bed.launch(fixture.guest(named: "vanish"))
        _ = try bed.launch(other.guest(named: "steady", paused: true))
        try await guest.waitReady()
        _ = try await Self.waitDisk(agent, vm: "vanish", Self.state("set"))
        _ = try await Self.waitDisk(agent, vm: "steady", Self.state("set"))
        let shell = try await guest.shell()
        try await shell.check("dd if=/dev/zero of=/dev/vda bs=1M count=20 oflag=direct 2>/dev/null")
        await shell.close()
        _ = try await Self.waitDisk(agent, vm: "vanish", Self.state("extending"))
        guest.signal(SIGKILL)
        // The extension finishes, the VM is not there to take the next mark: the disk waits
        // for it to come back, and says why.
        let gone = try await Self.waitDisk(agent, vm: "vanish") { $0["state"]?.stringValue == "unset" && ($0["extensions"]?.int64Value ?? 0) == 1 }
        #expect(Self.reason(gone).contains("not connected"), "\(JSONText.serialize(gone))")
        #expect(fixture.sizeBytes == 128 * Self.mib)
        #expect(try agent.health().status == 200)
        let steady = try #require(try Self.disks(agent).first { $0["vm"]?.stringValue == "steady" })
        #expect(steady["state"]?.stringValue == "set" && steady["failures"]?.int64Value == 0)
        #expect(try await agent.stop() == 0)
    }
}
