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
