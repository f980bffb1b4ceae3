import Glibc
import QMP
import VMPulseCore

/// `interface`: host-side counters of the VM's tap devices, from
/// /sys/class/net/IF/statistics. QMP has no query for a netdev's host
/// interface in QEMU 7.2, so the tap names come from HMP `info network`.
/// Like libvirt, rx and tx are from the guest's side: what the host's tap
/// transmits, the guest receives.
enum InterfaceGroup {
    static let queries = [QMPQuery("human-monitor-command", ["command-line": "info network"])]

    /// Tap interface names in the order QEMU lists its netdevs.
    static func tapNames(_ reply: JSONValue) throws(QMPError) -> [String] {
        let text = try ReplyReader(command: "human-monitor-command info network", value: reply).stringValue()
        var names: [String] = []
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            guard line.contains("type=tap") else { continue }
            for field in line.split(separator: ",") {
                let trimmed = field.drop(while: { $0 == " " })
                if trimmed.hasPrefix("ifname=") {
                    let name = String(trimmed.dropFirst("ifname=".count))
                    if Self.isInterfaceName(name) && !names.contains(name) { names.append(name) }
                }
            }
        }
        return names
    }

    /// Linux interface names: 1 to 15 bytes, no '/', no white space. Anything else is not read from /sys.
    static func isInterfaceName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 15 && name != "." && name != ".."
            && !name.contains(where: { $0 == "/" || $0.isWhitespace })
    }

    static func params(taps: [String]) -> [StatsParam] {
        var w = ParamWriter()
        w.uint("net.count", UInt64(taps.count))
        for (i, tap) in taps.enumerated() {
            let base = "/sys/class/net/\(tap)/statistics/"
            func counter(_ name: String) -> UInt64? {
                ProcFS.read(base + name).flatMap { UInt64($0.split(separator: "\n").first ?? "") }
            }
            w.string("net.\(i).name", tap)
            w.uint("net.\(i).rx.bytes", ifPresent: counter("tx_bytes"))
            w.uint("net.\(i).rx.pkts", ifPresent: counter("tx_packets"))
            w.uint("net.\(i).rx.errs", ifPresent: counter("tx_errors"))
            w.uint("net.\(i).rx.drop", ifPresent: counter("tx_dropped"))
            w.uint("net.\(i).tx.bytes", ifPresent: counter("rx_bytes"))
            w.uint("net.\(i).tx.pkts", ifPresent: counter("rx_packets"))
            w.uint("net.\(i).tx.errs", ifPresent: counter("rx_errors"))
            w.uint("net.\(i).tx.drop", ifPresent: counter("rx_dropped"))
        }
        return w.params
    }
}

extension InterfaceGroup {
    /// The tap interfaces a QEMU process holds open, from /proc/PID/fdinfo (`iff:` of
    /// each /dev/net/tun descriptor), in descriptor order; a multiqueue tap counts once.
    /// Needs no monitor command, and sees taps that libvirt passed in as descriptors too.
    static func tapNames(pid: Int32) -> [String]? {
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        var fds: [Int] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let fd = Int(name) { fds.append(fd) }
        }
        var names: [String] = []
        var target = [CChar](repeating: 0, count: 256)
        for fd in fds.sorted() {
            let n = readlink("/proc/\(pid)/fd/\(fd)", &target, target.count - 1)
            guard n == 12, String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "/dev/net/tun" else { continue }
            guard let info = ProcFS.read("/proc/\(pid)/fdinfo/\(fd)") else { continue }
            for line in info.split(separator: "\n") where line.hasPrefix("iff:") {
                let name = String(line.dropFirst(4).filter { $0 != " " && $0 != "\t" })
                if isInterfaceName(name) && !names.contains(name) { names.append(name) }
            }
        }
        return names
    }
}
