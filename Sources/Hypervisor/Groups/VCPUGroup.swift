import QMP
import VMPulseCore

/// `vcpu`: the vCPU threads QEMU names in `query-cpus-fast`, with their times
/// from /proc/PID/task/TID: `time` (on a CPU), `delay` (waiting in the run
/// queue, schedstat) and `wait` (only when the kernel keeps schedstats).
enum VCPUGroup {
    static let queries = [QMPQuery("query-cpus-fast"), QMPQuery("query-hotpluggable-cpus")]

    /// One vCPU: its index and host thread id.
    struct VCPU: Equatable {
        var index: Int64
        var threadID: Int64
    }

    static func vcpus(_ reply: JSONValue) throws(QMPError) -> [VCPU] {
        var result: [VCPU] = []
        for cpu in try ReplyReader(command: "query-cpus-fast", value: reply).array() {
            result.append(VCPU(index: try cpu.int("cpu-index"), threadID: try cpu.int("thread-id")))
        }
        return result
    }

    /// How many vCPUs the VM can have: the sum of its slots' `vcpus-count` (checked: a sum
    /// past 2^64 - 1 is a reply no QEMU sends, refused rather than wrapped).
    static func maximum(_ reply: JSONValue) throws(QMPError) -> UInt64 {
        var total: UInt64 = 0
        for slot in try ReplyReader(command: "query-hotpluggable-cpus", value: reply).array() {
            let (sum, overflow) = total.addingReportingOverflow(try slot.uint("vcpus-count"))
            guard !overflow else {
                throw .unexpectedReply(command: "query-hotpluggable-cpus", detail: "\(slot.path).vcpus-count: the sum passes 2^64 - 1")
            }
            total = sum
        }
        return total
    }

    static func params(vcpus: [VCPU], maximum: UInt64?, pid: Int32?) throws(ProcParseError) -> [StatsParam] {
        var w = ParamWriter()
        w.uint("vcpu.current", UInt64(vcpus.count))
        w.uint("vcpu.maximum", maximum ?? UInt64(vcpus.count))
        for cpu in vcpus {
            let prefix = "vcpu.\(cpu.index)"
            w.int("\(prefix).state", 1)  // virVcpuState RUNNING: every vCPU QEMU lists is online
            guard let pid, let sched = try ProcFS.threadSchedStat(pid: pid, tid: cpu.threadID) else { continue }
            w.uint("\(prefix).time", sched.runNanoseconds)
            if let wait = ProcFS.threadWaitSum(pid: pid, tid: cpu.threadID) {
                w.uint("\(prefix).wait", wait)
            }
            w.uint("\(prefix).delay", sched.runQueueWaitNanoseconds)
        }
        return w.params
    }
}
