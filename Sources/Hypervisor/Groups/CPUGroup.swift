import VMPulseCore

/// `cpu-total`: the QEMU process's CPU time from /proc/PID/stat, every thread
/// included (exited ones too), in nanoseconds. Needs no monitor: it is
/// reported even for a VM whose monitor does not answer.
enum CPUGroup {
    static func params(pid: Int32) throws(ProcParseError) -> [StatsParam] {
        guard let stat = try ProcFS.processStat(pid: pid) else { return [] }
        return params(stat)
    }

    static func params(_ stat: ProcStat) -> [StatsParam] {
        let nsPerTick = 1_000_000_000 / ProcFS.clockTicksPerSecond
        let user = stat.userTicks &* nsPerTick
        let system = stat.systemTicks &* nsPerTick
        var w = ParamWriter()
        w.uint("cpu.time", user &+ system)
        w.uint("cpu.user", user)
        w.uint("cpu.system", system)
        return w.params
    }
}
