import Glibc
import VMPulseCore

/// Finds the QEMU process of a libvirt domain, for billing's process identity (`QEMUInstance`).
///
/// libvirt's API does not give the pid, and its pid file lives in libvirtd's run directory,
/// which an agent of another mount namespace (or another URI) cannot rely on. libvirt starts
/// every QEMU with `-uuid`, so the process is found by its command line: a scan of /proc,
/// done once per domain run (the caller keeps it by domain id).
enum LibvirtInstances {
    static func find(uuid: String) -> QEMUInstance? {
        guard let dir = opendir("/proc") else { return nil }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = Int32(name), pid > 0 else { continue }
            guard let comm = ProcFS.read("/proc/\(pid)/comm", limit: 64), comm.hasPrefix("qemu") else { continue }
            guard let bytes = ProcFS.readBytes("/proc/\(pid)/cmdline") else { continue }
            guard QEMUArguments(cmdline: bytes).uuid?.lowercased() == uuid.lowercased() else { continue }
            return ProcFS.instance(pid: pid)
        }
        return nil
    }
}
