import Foundation
import Glibc
import Testing
import VMPulseCore
import VMPulseTestSupport

/// A thin disk that cannot work makes the agent's health degraded, naming the disk: here
/// its device vanishes while the disk waits at its mark, then comes back.
@Suite(.serialized) struct ThinDiskHealthTests {
    @Test func aDeviceThatVanishesDegradesHealthUntilItIsBack() async throws {
        let bed = try TestBed(prefix: "thinhealth")
        defer { bed.shutdown() }
        let fixture = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { fixture.detach() }
        // The configuration names the device through a link the test can take away.
        let link = bed.directory + "/thin-device"
        #expect(symlink(fixture.device, link) == 0)
        let yaml = """
            thin_disks:
              - vm: vanishing
                drive: disk0
                chunk_mib: 64
                max_size_mib: 1100
                device: \(link)
                backend: loop
                file: \(fixture.file)
            """
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory, extraYAML: yaml)
        try await agent.waitReady()
        _ = try bed.launch(fixture.guest(named: "vanishing", paused: true))
        try await waitHealth(agent, status: 200, timeout: .seconds(20)) { _ in
            (try? HTTPGet.fetch(port: agent.port, path: "/v1/thin").body.contains("\"state\":\"set\"")) == true
        }

        #expect(unlink(link) == 0)
        // Seen by the periodic device check (5 s), then 3 failures in a row (1 + 2 s).
        let degraded = try await waitHealth(agent, status: 503, timeout: .seconds(20)) { _ in true }
        let problems = degraded["thin_problems"]?.arrayValue ?? []
        #expect(problems.count == 1)
        #expect(problems.first?["disk"]?.stringValue == "vanishing/disk0")
        let problem = problems.first?["problem"]?.stringValue ?? ""
        #expect(problem.contains("cannot stat \(link)") && problem.contains("times in a row"), "\(problem)")
        #expect(degraded["status"]?.stringValue == "degraded")

        #expect(symlink(fixture.device, link) == 0)
        let healthy = try await waitHealth(agent, status: 200, timeout: .seconds(70)) { _ in true }
        #expect(healthy["thin_problems"] == nil)
        #expect(try await agent.stop() == 0)
    }

    /// A cloned VM (two running QEMUs with one UUID) would both claim a thin disk named by
    /// that UUID: the disk is bound to neither, reported, and bound again when one goes.
    @Test func aThinDiskTwoRunningVMsClaimIsBoundToNeither() async throws {
        let bed = try TestBed(prefix: "thinclone")
        defer { bed.shutdown() }
        let mine = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { mine.detach() }
        let theirs = try ThinDiskFixture(directory: bed.directory, physicalMiB: 64, capacityMiB: 1024)
        defer { theirs.detach() }
        var original = mine.guest(named: "thin-a", paused: true)
        let uuid = original.uuid
        let yaml = """
            thin_disks:
              - vm: \(uuid)
                node: proto0
                chunk_mib: 64
                max_size_mib: 1100
                device: \(mine.device)
                backend: loop
                file: \(mine.file)
            """
        let agent = try AgentProcess(socketDirectory: bed.socketDirectory, dataDirectory: bed.directory + "/data", directory: bed.directory, extraYAML: yaml)
        try await agent.waitReady()
        original.uuid = uuid
        _ = try bed.launch(original)
        try await waitHealth(agent, status: 200, timeout: .seconds(20)) { _ in
            (try? HTTPGet.fetch(port: agent.port, path: "/v1/thin").body.contains("\"state\":\"set\"")) == true
        }
        var cloneSpec = theirs.guest(named: "thin-b", paused: true)
        cloneSpec.uuid = uuid
        let clone = try bed.launch(cloneSpec)
        let contested = try await waitHealth(agent, status: 503, timeout: .seconds(20)) { body in body["thin_problems"] != nil }
        let problem = contested["thin_problems"]?.arrayValue?.first?["problem"]?.stringValue ?? ""
        #expect(problem.contains("2 running VMs answer to '\(uuid)'") && problem.contains("thin-a.sock") && problem.contains("thin-b.sock"), "\(problem)")
        let thin = try HTTPGet.fetch(port: agent.port, path: "/v1/thin").body
        #expect(!thin.contains("\"state\":\"set\""), "bound to neither: \(thin)")
        #expect(agent.logText.components(separatedBy: "running VMs answer to").count - 1 == 1, "logged once")

        clone.stop()
        let healthy = try await waitHealth(agent, status: 200, timeout: .seconds(20)) { _ in
            (try? HTTPGet.fetch(port: agent.port, path: "/v1/thin").body.contains("\"state\":\"set\"")) == true
        }
        #expect(healthy["thin_problems"] == nil && healthy["identity_conflicts"] == nil)
        #expect(try await agent.stop() == 0)
    }

    /// Waits until `/v1/health` answers `status` and `also` holds; returns its body.
    @discardableResult
    func waitHealth(_ agent: AgentProcess, status: Int, timeout: Duration, _ also: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var last: JSONValue = .null
        while ContinuousClock.now < deadline {
            if let h = try? agent.health() {
                last = h.body
                if h.status == status && also(h.body) { return h.body }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestBedError("health never reached \(status); last: \(JSONText.serialize(last))")
    }
}
