import Testing
import VMPulseCore

@Suite struct ProcStatsTests {
    // A real /proc/PID/stat line of qemu-system-x86_64 (52 fields), with a command name holding ") (".
    let stat = "5099 (qemu) (x 86) S 1 5098 5098 0 -1 138412352 24911 0 0 0 2317 589 0 0 20 0 6 0 454511 529317888 20918 18446744073709551615 1 1 0 0 0 0 268444224 4096 17603 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

    @Test func parsesTimesAndRSSCountingFromTheLastParenthesis() throws {
        let s = try ProcStat.parse(stat)
        #expect(s.userTicks == 2317)
        #expect(s.systemTicks == 589)
        #expect(s.rssPages == 20918)
        #expect(s.startTicks == 454511)
    }

    @Test func readsTheBootTime() {
        #expect(ProcBootTime.parse("cpu  1 2 3\nbtime 1795300000\nprocesses 5\n") == 1_795_300_000)
        #expect(ProcBootTime.parse("cpu 1\n") == nil)
    }

    @Test(arguments: ["", "5099 qemu S 1", "5099 (qemu) S 1 2 3", "5099 (qemu) S 1 5098 5098 0 -1 1 2 0 0 0 x y 0 0 20 0 6 0 4 5 6 7"])
    func rejectsTextThatIsNotAStatLine(text: String) {
        #expect(throws: ProcParseError.self) { try ProcStat.parse(text, file: "/proc/1/stat") }
    }

    @Test func parsesSchedstat() throws {
        let s = try SchedStat.parse("2415371107 38262171 1234\n")
        #expect(s.runNanoseconds == 2_415_371_107)
        #expect(s.runQueueWaitNanoseconds == 38_262_171)
        #expect(throws: ProcParseError.self) { try SchedStat.parse("12\n") }
        #expect(throws: ProcParseError.self) { try SchedStat.parse("a b c") }
    }

    @Test func readsWaitSumOnlyWhenPresent() {
        let withStats = "se.exec_start : 1.0\nse.statistics.wait_sum                     :             1.500000\n"
        #expect(ProcSched.waitSumNanoseconds(withStats) == 1_500_000)
        #expect(ProcSched.waitSumNanoseconds("se.exec_start : 1.0\n") == nil)
        #expect(ProcSched.waitSumNanoseconds("wait_sum : -4\n") == nil)
        // Past 2^64 ns (or not finite): refused, never a trap.
        #expect(ProcSched.waitSumNanoseconds("wait_sum : 18446744073709.551616\n") == nil)
        #expect(ProcSched.waitSumNanoseconds("wait_sum : 1e300\n") == nil)
        #expect(ProcSched.waitSumNanoseconds("wait_sum : inf\n") == nil)
        #expect(ProcSched.waitSumNanoseconds("wait_sum : nan\n") == nil)
        #expect(ProcSched.waitSumNanoseconds("wait_sum : 18446744073709.5\n") != nil)
    }
}
