import Testing
import VMPulseCore

@Suite struct GroupSelectionTests {
    let supported: Set<StatsGroup> = [.state, .cpuTotal, .block]

    @Test func emptyRequestMeansEverySupportedGroupInCanonicalOrder() throws {
        let s = try GroupSelection.resolve(requested: [], supported: supported, enforce: false, backend: "qmp")
        #expect(s.groups == [.state, .cpuTotal, .block])
        #expect(s.leftOut.isEmpty)
    }

    @Test func unsupportedAndUnknownGroupsAreLeftOutWithoutEnforce() throws {
        let s = try GroupSelection.resolve(requested: ["block", "perf", "bogus", "state"], supported: supported, enforce: false, backend: "qmp")
        #expect(s.groups == [.state, .block])
        #expect(s.leftOut == ["perf", "bogus"])
    }

    @Test func enforceFailsNamingEveryProblem() {
        #expect(throws: GroupSelectionError(unsupported: [.perf], unknown: ["bogus"], backend: "qmp")) {
            try GroupSelection.resolve(requested: ["block", "perf", "bogus"], supported: supported, enforce: true, backend: "qmp")
        }
        do {
            _ = try GroupSelection.resolve(requested: ["perf"], supported: supported, enforce: true, backend: "qmp")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("does not support the group perf"))
            #expect(error.description.contains("groups: state, cpu-total"))
        }
    }

    @Test func enforcePassesWhenEverythingIsSupported() throws {
        let s = try GroupSelection.resolve(requested: ["cpu-total"], supported: supported, enforce: true, backend: "qmp")
        #expect(s.groups == [.cpuTotal])
    }

    @Test func commaListsAreSplitAndBlanksIgnored() throws {
        let names = GroupSelection.names(fromList: ["block,cpu-total", " state ", ""])
        let s = try GroupSelection.resolve(requested: names, supported: supported, enforce: true, backend: "qmp")
        #expect(s.groups == [.state, .cpuTotal, .block])
    }

    @Test func keyPrefixesFollowLibvirt() {
        #expect(StatsGroup.cpuTotal.keyPrefix == "cpu")
        #expect(StatsGroup.interface.keyPrefix == "net")
        #expect(StatsGroup.block.keyPrefix == "block")
    }
}
