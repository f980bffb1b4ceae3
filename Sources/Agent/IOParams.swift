import Hypervisor
import VMPulseCore

/// The `io` group of one VM: each disk's counters and its windows.
enum IOParams {
    static func params(disks: [DiskIOReading], windows: [String: IOWindows]) -> [StatsParam] {
        var w = ParamWriter()
        w.uint("io.count", UInt64(disks.count))
        for (i, disk) in disks.enumerated() {
            w.append(contentsOf: IOGroup.counterParams(index: i, name: disk.name, counters: disk.counters, idleTimeNs: disk.idleTimeNs,
                                                          unreported: disk.unreported))
            guard let history = windows[disk.name] else { continue }
            for (label, seconds) in IOWindows.windows {
                guard let f = history.figures(window: seconds) else { continue }
                // How much time the window really covers (less than its name until the agent has watched that long).
                w.double("io.\(i).window_seconds.\(label)", f.seconds)
                for op in IOOperation.allCases {
                    if let v = f.latencyAvgNs[op] { w.double("io.\(i).\(op.rawValue)_latency_avg_ns.\(label)", v) }
                }
                for op in [IOOperation.read, .write] {
                    if let v = f.queueDepthAvg[op] { w.double("io.\(i).\(op.rawValue)_queue_depth_avg.\(label)", v) }
                }
                for op in IOOperation.allCases {
                    if let v = f.latencyP50Ns[op] { w.uint("io.\(i).\(op.rawValue)_latency_p50_ns.\(label)", v) }
                    if let v = f.latencyP99Ns[op] { w.uint("io.\(i).\(op.rawValue)_latency_p99_ns.\(label)", v) }
                }
            }
        }
        return w.params
    }
}
