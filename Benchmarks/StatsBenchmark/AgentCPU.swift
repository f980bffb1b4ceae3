import Foundation
import VMPulseTestSupport

/// An agent's CPU over a stretch of steady sampling (and libvirtd's, for the libvirt
/// backend, since that is where its work goes).
struct AgentCPU {
    var seconds: Double
    var vms: Int
    var agentCPU: Double
    var libvirtdCPU: Double?

    static func measure(_ agent: AgentProcess, vms: Int, seconds: Double, libvirtd: pid_t? = nil) async throws -> AgentCPU {
        let a0 = try cpuSeconds(agent.pid)
        let l0 = try libvirtd.map(cpuSeconds)
        let start = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
        let elapsed = (ContinuousClock.now - start) / .milliseconds(1) / 1000
        let a1 = try cpuSeconds(agent.pid)
        let l1 = try libvirtd.map(cpuSeconds)
        var libvirtdCPU: Double?
        if let l0, let l1 { libvirtdCPU = l1 - l0 }
        return AgentCPU(seconds: elapsed, vms: vms, agentCPU: a1 - a0, libvirtdCPU: libvirtdCPU)
    }

    func row(_ label: String) -> String {
        let perVM = agentCPU / seconds / Double(vms) * 1000
        let share = agentCPU / seconds * 100
        let daemon = libvirtdCPU.map { String(format: "%.2f %% of one core (%.3f ms per VM per second)", $0 / seconds * 100, $0 / seconds / Double(vms) * 1000) } ?? "-"
        return "| \(label) | \(String(format: "%.3f", perVM)) ms | \(String(format: "%.2f", share)) % | \(daemon) |"
    }

    static func cpuSeconds(_ pid: pid_t) throws -> Double { try ProcessUsage.cpuSeconds(pid) }
    static func pid(of name: String) throws -> pid_t { try ProcessUsage.pid(of: name) }
}
