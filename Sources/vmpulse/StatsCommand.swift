import ArgumentParser
import Glibc
import Hypervisor
import VMPulseCore

/// `vmpulse stats`: every VM's statistics in one call, like `virsh domstats`.
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Print the statistics of every VM on this host (or of the VMs named), like 'virsh domstats'.",
        discussion: """
            Groups: state, cpu-total, balloon, vcpu, interface, block, iothread (all by default).
            Without --enforce a group this host cannot report is left out; with it, the command fails (exit 2).
            A VM whose monitor does not answer within --timeout is reported with state.monitor-response=-1.
            """
    )

    @Option(name: .customLong("group"), parsing: .singleValue, help: "Groups to report, comma-separated (repeatable).")
    var groups: [String] = []

    @Flag(help: "Fail (exit 2) when a requested group is not supported.")
    var enforce = false

    @Flag(help: "Print one JSON document instead of the virsh text form.")
    var json = false

    @Option(help: "The directory of the VMs' vmpulse monitor sockets.")
    var socketDir = "/run/vmpulse/qmp"

    @Option(help: "Seconds one VM may take to answer before it is reported unresponsive.")
    var timeout: Double = 2

    @Argument(help: "VM names or UUIDs (default: every VM).")
    var vms: [String] = []

    func validate() throws {
        guard timeout > 0, timeout <= 600 else {
            throw ValidationError("--timeout must be between 0 and 600 seconds, got \(timeout)")
        }
    }

    func run() async throws {
        LogSetup.bootstrap()
        var options = QMPBackend.Options()
        options.socketDirectory = socketDir
        options.timeout = .milliseconds(Int64(timeout * 1000))
        options.balloonStatsPeriod = 0  // a stats query never changes a VM; the agent switches guest stats on
        let backend = QMPBackend(options: options)

        let selection: GroupSelection
        do {
            selection = try GroupSelection.resolve(
                requested: GroupSelection.names(fromList: groups), supported: backend.supportedGroups,
                enforce: enforce, backend: backend.name)
        } catch {
            Stderr.write("vmpulse stats: \(error)\n")
            throw ExitCode(2)
        }
        if !selection.leftOut.isEmpty {
            Stderr.write("vmpulse stats: left out \(selection.leftOut.joined(separator: ", ")) (not supported here; --enforce makes this an error)\n")
        }

        let records: [StatsRecord]
        do {
            records = try await backend.collect(groups: selection.groups, vms: vms.isEmpty ? nil : vms)
        } catch {
            Stderr.write("vmpulse stats: \(error)\n")
            throw ExitCode.failure
        }
        // No backend.close(): the process ends here and the kernel closes the sockets.

        let missing = vms.filter { selector in !records.contains { $0.name == selector || $0.uuid == selector } }
        print(json ? StatsFormat.json(records) : StatsFormat.text(records), terminator: "")
        fflush(nil)  // results first, then the per-VM problems on stderr
        for record in records {
            for error in record.errors { Stderr.write("vmpulse stats: \(record.name): \(error)\n") }
        }
        if !missing.isEmpty {
            Stderr.write("vmpulse stats: no VM named \(missing.joined(separator: ", ")) in \(socketDir)\n")
            throw ExitCode.failure
        }
    }
}

enum Stderr {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            bytes = bytes.dropFirst(n)
        }
    }
}
