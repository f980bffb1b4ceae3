import Agent
import ArgumentParser
import Glibc
import Hypervisor
import Logging
import VMPulseCore

/// `vmpulse stats`: every VM's statistics in one call, like `virsh domstats`.
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Print the statistics of every VM on this host (or of the VMs named), like 'virsh domstats'.",
        discussion: """
            Groups: state, cpu-total, balloon, vcpu, interface, block, io, iothread; on the libvirt backend also
            perf, memory, dirtyrate and vm (every group the backend has, by default).
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

    @Option(help: "How to reach the VMs: qmp or libvirt (default: the configuration's, else qmp).")
    var backend: String?

    @Option(help: "The libvirt connection URI (default: the configuration's, else qemu:///system).")
    var libvirtURI: String?

    @Option(help: "The directory of the VMs' vmpulse monitor sockets (default: the configuration's, else /run/vmpulse/qmp).")
    var socketDir: String?

    @Option(help: "Seconds one VM may take to answer before it is reported unresponsive.")
    var timeout: Double = 2

    @Option(help: "HOST:PORT of a running agent (default: the configuration's listen address, else 127.0.0.1:9790).")
    var agent: String?

    @Option(help: "The agent's configuration file, for its address and socket directory.")
    var config: String?

    @Flag(help: "Ask QEMU directly even if an agent runs (it cannot while the agent holds the monitors).")
    var direct = false

    @Argument(help: "VM names or UUIDs (default: every VM).")
    var vms: [String] = []

    func validate() throws {
        guard timeout > 0, timeout <= 600 else {
            throw ValidationError("--timeout must be between 0 and 600 seconds, got \(timeout)")
        }
    }

    func run() async throws {
        LogSetup.bootstrap()
        let settings: AgentConfig
        do {
            settings = try AgentSettings.load(file: config, backend: backend, libvirtURI: libvirtURI, socketDir: socketDir, listen: agent)
        } catch {
            Stderr.write("vmpulse stats: \(error)\n")
            throw ExitCode.failure
        }
        if !direct, let code = try await fromAgent(settings) {
            if code != 0 { throw ExitCode(code) }
            return
        }
        var options = settings.backendOptions
        options.timeout = .milliseconds(Int64(timeout * 1000))
        options.balloonStatsPeriod = 0  // a stats query never changes a VM; the agent switches guest stats on
        let backend: any HypervisorBackend
        do {
            backend = try Backends.make(options, logger: Logger(label: "vmpulse.\(settings.backend.rawValue)"))
        } catch {
            Stderr.write("vmpulse stats: \(error)\n")
            throw ExitCode.failure
        }

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

        var records: [StatsRecord]
        do {
            records = try await backend.collect(groups: selection.groups, vms: vms.isEmpty ? nil : vms)
        } catch {
            Stderr.write("vmpulse stats: \(error)\n")
            throw ExitCode.failure
        }
        // No backend.close(): the process ends here and the kernel closes the sockets.

        let missing = vms.filter { selector in !records.contains { $0.name == selector || $0.uuid == selector } }
        for i in records.indices { records[i].source = "direct" }
        if !json { print("# source: direct (no agent answered; asked \(settings.backend == .qmp ? "each QEMU" : "libvirt"))") }
        print(json ? StatsFormat.json(records) : StatsFormat.text(records), terminator: "")
        fflush(nil)  // results first, then the per-VM problems on stderr
        for record in records {
            for error in record.errors { Stderr.write("vmpulse stats: \(record.name): \(error)\n") }
        }
        if !missing.isEmpty {
            Stderr.write("vmpulse stats: no VM named \(missing.joined(separator: ", ")) (\(settings.vmSource))\n")
            throw ExitCode.failure
        }
    }
}

extension StatsCommand {
    /// Asks a running agent; returns the exit code, or nil when no agent answers (then the
    /// figures are collected directly). Whatever answers on the agent's port is checked
    /// before anything is printed (`AgentAnswer`): what is not a vmpulse agent (a web
    /// server, something that never answers or never stops) is named in a warning, and the
    /// figures are collected directly.
    func fromAgent(_ settings: AgentConfig) async throws -> Int32? {
        let (host, port) = try settings.listenAddress()
        var query = "/v1/stats?format=\(json ? "json" : "text")"
        for g in GroupSelection.names(fromList: groups) { query += "&group=" + percentEncoded(g) }
        for vm in vms { query += "&vm=" + percentEncoded(vm) }
        if enforce { query += "&enforce=1" }
        let token = try settings.api.loadTokens().first
        let answer: AgentClient.Response
        do {
            answer = try await AgentClient.get(host: host, port: port, path: query, timeout: max(timeout, 1), token: token)
        } catch {
            if case .unreachable = error {
                // Nothing listens: the usual case on a host without an agent.
                if agent != nil { Stderr.write("vmpulse stats: \(error) at \(host):\(port); asking QEMU directly\n") }
            } else {
                Stderr.write("vmpulse stats: warning: what answers at \(host):\(port) is not a vmpulse agent (\(error)); asking QEMU directly\n")
            }
            return nil
        }
        switch AgentAnswer.check(answer, json: json) {
        case .stats:
            if !json { print("# source: agent at \(host):\(port) (statsAge: seconds since each VM last answered)") }
            print(answer.body, terminator: "")
            fflush(nil)
            if let leftOut = answer.headers.first(name: "X-VMPulse-Left-Out") {
                Stderr.write("vmpulse stats: left out \(AgentClient.printable(leftOut.replacingOccurrences(of: ",", with: ", "))) (not supported here; --enforce makes this an error)\n")
            }
            if let errors = answer.headers.first(name: "X-VMPulse-Errors"), let list = try? JSONParser.parse(Array(errors.utf8)).arrayValue {
                for e in list.compactMap(\.stringValue) { Stderr.write("vmpulse stats: \(AgentClient.printable(e))\n") }
            }
            return 0
        case .refused(let message):
            Stderr.write("vmpulse stats: \(AgentClient.printable(message))\n")
            return answer.status == 400 && message.contains("group") ? 2 : 1
        case .notAnAgent(let why):
            Stderr.write("vmpulse stats: warning: what answers at \(host):\(port) is not a vmpulse agent (\(answer.summary): \(why)); asking QEMU directly\n")
            return nil
        }
    }

    private func percentEncoded(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
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
