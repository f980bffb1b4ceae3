import Glibc
import VMPulseCore

/// One disk as an I/O pass reads it.
public struct DiskIOReading: Sendable, Equatable {
    public var name: String
    public var path: String
    public var counters: BlockCounters
    public var histograms: [IOOperation: LatencyHistogram]
    public var idleTimeNs: UInt64?
    /// Highest offset written in the protocol node (`block.N.allocation`).
    public var allocation: UInt64
    /// Counters the backend cannot read (libvirt reports no unmap, invalid or failed
    /// operations): 0 in `counters`, left out of the `io` keys.
    public var unreported: Set<IOCounter> = []
}

/// One VM as an I/O pass reads it: the cheap, frequent pass the agent runs every
/// second for accounting and the `io` windows (one `query-blockstats` per VM).
public struct VMIOReading: Sendable {
    /// The VM's handle in its backend (see `HypervisorBackend`).
    public var machine: String
    public var name: String
    public var uuid: String
    public var instance: QEMUInstance?
    public var disks: [DiskIOReading]
    /// Seconds on the monotonic clock (`MonotonicTime.now()`), when the reply was taken.
    public var time: Double
    /// Unix seconds at the same moment.
    public var wallTime: Double
    /// Why the VM could not be read; nil when it was.
    public var error: String?

    public var isResponsive: Bool { error == nil }

    /// Whether `name` and `uuid` are QEMU's own (both learned); until then they are the
    /// socket's name and "", and nothing is billed under them.
    public var identityKnown: Bool = false

    /// What the VM claims to be, for its ledger key (see `LedgerKeys`); nil until its
    /// identity is known, so that nothing is billed under half an identity.
    public var claim: String? {
        identityKnown ? LedgerKeys.claim(name: name, uuid: uuid) : nil
    }
}

/// Clocks read in one place.
public enum MonotonicTime {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public static func wallNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

extension ProcFS {
    /// When the host booted (Unix seconds), from /proc/stat; read once.
    static let bootTime: Double? = read("/proc/stat").flatMap(ProcBootTime.parse).map { Double($0) }

    /// The host's boot id (`/proc/sys/kernel/random/boot_id`); read once.
    static let bootID: String = read("/proc/sys/kernel/random/boot_id")
        .map { $0.filter { !$0.isWhitespace } }.flatMap { $0.isEmpty ? nil : $0 } ?? "unknown-boot"

    /// The QEMU process as an instance: pid, start time and boot id, unique for good.
    static func instance(pid: Int32) -> QEMUInstance? {
        guard let stat = try? processStat(pid: pid) else { return nil }
        let started = (bootTime ?? 0) + Double(stat.startTicks) / Double(clockTicksPerSecond)
        return QEMUInstance(pid: pid, startTicks: UInt64(stat.startTicks), bootID: bootID, startedAt: started)
    }
}
