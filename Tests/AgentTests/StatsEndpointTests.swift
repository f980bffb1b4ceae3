import API
import Agent
import Testing
import VMPulseCore

@Suite struct StatsEndpointTests {
    let snapshot = [
        VMSnapshot(machine: "/s/a.sock", name: "a", uuid: "u-a", full: [
            StatsParam("state.state", .int(1)), StatsParam("state.monitor-response", .int(0)), StatsParam("block.count", .uint(1)),
        ], responsive: true, errors: [], lastAnswer: 10),
        VMSnapshot(machine: "/s/b.sock", name: "b", uuid: "u-b", full: [], responsive: false,
                   errors: ["no answer"], lastAnswer: nil),
    ]

    @Test func servesTheSnapshotWithAgesAndGroups() throws {
        let a = StatsEndpoint.answer(groups: ["block"], vms: [], enforce: nil, format: nil, snapshot: snapshot, now: 12.5)
        #expect(a.status == 200)
        let records = try StatsFormat.parseJSON(Array(a.body.utf8))
        #expect(records.map(\.name) == ["a", "b"])
        #expect(records[0].statsAge == 2.5)
        #expect(records[0].source == "agent")
        #expect(Set(records[0].params.map(\.key)) == ["state.monitor-response", "block.count"])
        #expect(records[1].statsAge == nil)
        #expect(records[1].errors == ["no answer"])
    }

    @Test func textFormatCarriesErrorsInAHeader() {
        let a = StatsEndpoint.answer(groups: [], vms: ["b"], enforce: "0", format: "text", snapshot: snapshot, now: 12)
        #expect(a.status == 200)
        #expect(a.body.hasPrefix("Domain: 'b'\n"))
        #expect(a.headers["X-VMPulse-Errors"] == #"["b: no answer"]"#)
    }

    @Test func enforceAndBadParametersAreClientErrors() {
        let enforced = StatsEndpoint.answer(groups: ["perf"], vms: [], enforce: "1", format: nil, snapshot: snapshot, now: 0)
        #expect(enforced.status == 400)
        #expect(enforced.body.contains("does not support the group perf"))
        let lenient = StatsEndpoint.answer(groups: ["perf,io"], vms: [], enforce: nil, format: nil, snapshot: snapshot, now: 0)
        #expect(lenient.status == 200)
        #expect(lenient.headers["X-VMPulse-Left-Out"] == "perf")
        #expect(StatsEndpoint.answer(groups: [], vms: [], enforce: "perhaps", format: nil, snapshot: snapshot, now: 0).status == 400)
        #expect(StatsEndpoint.answer(groups: [], vms: [], enforce: nil, format: "xml", snapshot: snapshot, now: 0).status == 400)
        let missing = StatsEndpoint.answer(groups: [], vms: ["a", "zz"], enforce: nil, format: nil, snapshot: snapshot, now: 0)
        #expect(missing.status == 404)
        #expect(missing.body.contains("no VM named zz"))
    }

    @Test func healthIsDegradedWhenTheLedgerIs() {
        var status = LedgerStatus()
        status.state = .degraded
        status.problem = "ledger /x is read-only"
        let h = HealthEndpoint.answer(ledger: status, hostError: nil, vms: 3)
        #expect(h.status == 503)
        #expect(h.body.contains("\"status\":\"degraded\""))
        #expect(h.body.contains("read-only"))
        status.state = .ok
        status.problem = nil
        #expect(HealthEndpoint.answer(ledger: status, hostError: nil, vms: 3).status == 200)
        #expect(HealthEndpoint.answer(ledger: status, hostError: "no socket dir", vms: 0).status == 503)
    }
}
