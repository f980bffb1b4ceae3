import Foundation
import VMPulseCore

extension QMPSimulator {
    /// One simulated VM backed by `model`'s spare monitor, read by an agent through a few
    /// full passes: every reply the agent asks for, recorded to `bed.directory/replies.json`
    /// for simulators that replay it (the benchmarks' stand-ins for QEMUs past what boots here).
    public static func recordReplies(model: Guest, bed: TestBed) async throws -> String {
        let directory = bed.directory + "/recording"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let simulator = try await QMPSimulator.start(directory: directory, count: 1, replies: .model(model.controlSocket))
        let agent = try AgentProcess(socketDirectory: directory, dataDirectory: bed.directory + "/data-recording", directory: bed.directory,
                                     interval: 0.5, flushInterval: 10, fullInterval: 1)
        try await agent.waitReady()
        try await Task.sleep(for: .seconds(5))
        try await agent.stop()
        let path = bed.directory + "/replies.json"
        try JSONText.serialize(.object(simulator.recorded())).write(toFile: path, atomically: true, encoding: .utf8)
        await simulator.stop()
        return path
    }
}
