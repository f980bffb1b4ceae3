import Foundation
import VMPulseCore

/// A real Prometheus server (Debian's `prometheus`, installed by `make setup`) on
/// loopback, with a temporary data directory, scraping the given targets every second.
public final class PrometheusServer: @unchecked Sendable {
    public static let binary = "/usr/bin/prometheus"
    public static let promtool = "/usr/bin/promtool"
    public let port: Int
    public let directory: String
    private let pid: pid_t

    public init(directory: String, targets: [String], scrapeInterval: String = "1s") throws {
        self.directory = directory
        port = Int.random(in: 20_000...60_000)
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        let config = """
            global:
              scrape_interval: \(scrapeInterval)
              scrape_timeout: \(scrapeInterval)
            scrape_configs:
              - job_name: vmpulse
                static_configs:
                  - targets: [\(targets.map { "'\($0)'" }.joined(separator: ", "))]
            """
        try config.write(toFile: directory + "/prometheus.yml", atomically: true, encoding: .utf8)
        pid = try Spawn.start(Self.binary, ["--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
                                            "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"],
                              outputPath: directory + "/prometheus.log")
    }

    public func waitReady(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let r = try? HTTPGet.fetch(port: port, path: "/-/ready"), r.status == 200 { return }
            if Spawn.exited(pid) != nil { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestBedError("prometheus did not become ready: \((try? String(contentsOfFile: directory + "/prometheus.log", encoding: .utf8)) ?? "")")
    }

    /// An instant query at Unix time `at` (now when nil): the vector's samples as (labels, value).
    public func query(_ promQL: String, at: Double? = nil) throws -> [(labels: [String: String], value: Double)] {
        var path = "/api/v1/query?query=" + (promQL.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
        if let at { path += "&time=\(String(format: "%.3f", at))" }
        let r = try HTTPGet.fetch(port: port, path: path)
        guard r.status == 200, case .object(let top) = try JSONParser.parse(Array(r.body.utf8)), top["status"] == "success",
              case .object(let data)? = top["data"], case .array(let result)? = data["result"] else {
            throw TestBedError("prometheus query \(promQL) failed (\(r.status)): \(r.body.prefix(500))")
        }
        return result.compactMap { item in
            guard case .object(let sample) = item, case .array(let pair)? = sample["value"], pair.count == 2,
                  let value = pair[1].stringValue.flatMap(Double.init) else { return nil }
            var labels: [String: String] = [:]
            if case .object(let metric)? = sample["metric"] { for (k, v) in metric { labels[k] = v.stringValue } }
            return (labels, value)
        }
    }

    /// `promtool check metrics` on an exposition; its complaints, empty when it passes.
    public static func check(metrics: String, directory: String) throws -> (status: Int32, output: String) {
        let file = directory + "/metrics-\(UInt32.random(in: 0...UInt32.max)).txt"
        try metrics.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let r = try Spawn.capture("/bin/sh", ["-c", "exec \(promtool) check metrics < '\(file)'"])
        return (r.status, r.stdout + r.stderr)
    }

    public func stop() {
        kill(pid, SIGTERM)
        for _ in 0..<100 where Spawn.exited(pid) == nil { usleep(100_000) }
        if Spawn.exited(pid) == nil { kill(pid, SIGKILL); _ = Spawn.exited(pid) }
    }
}
