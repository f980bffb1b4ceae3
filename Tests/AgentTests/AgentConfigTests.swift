import Foundation
import Agent
import Testing

@Suite struct AgentConfigTests {
    @Test func anEmptyFileMeansEveryDefault() throws {
        #expect(try AgentConfig.parse(yaml: "") == AgentConfig())
        #expect(try AgentConfig.parse(yaml: "# nothing but a comment\n") == AgentConfig())
    }

    @Test func anUnknownBackendNamesTheChoices() throws {
        #expect(throws: ConfigError(key: "backend", message: "'xen' is not a backend (qmp or libvirt)")) {
            try AgentConfig.parse(yaml: "backend: xen\n")
        }
        #expect(throws: ConfigError(key: "libvirt_uri", message: "expected text")) { try AgentConfig.parse(yaml: "libvirt_uri: [a]\n") }
        #expect(try AgentConfig.parse(yaml: "").backend == .qmp)
        #expect(try AgentConfig.parse(yaml: "").libvirtURI == "qemu:///system")
    }

    @Test func everyKeyIsRead() throws {
        let c = try AgentConfig.parse(yaml: """
            backend: libvirt
            libvirt_uri: qemu+ssh://host/system
            socket_dir: /srv/qmp
            data_dir: /srv/vmpulse
            listen: 0.0.0.0:9800
            sampler:
              interval: 0.5
              full_interval: 30
              timeout: 1.5
              balloon_stats_period: 10
            io:
              latency_histograms: false
              histogram_boundaries_us: [100, 1000, 10000]
            ledger:
              period: 900
              flush_interval: 5
              sample_retention: 3600
            api:
              token_file: /srv/tokens
            """)
        var expected = AgentConfig()
        expected.api.tokenFile = "/srv/tokens"
        expected.backend = .libvirt
        expected.libvirtURI = "qemu+ssh://host/system"
        expected.socketDirectory = "/srv/qmp"
        expected.dataDirectory = "/srv/vmpulse"
        expected.listen = "0.0.0.0:9800"
        expected.interval = 0.5
        expected.fullInterval = 30
        expected.timeout = 1.5
        expected.balloonStatsPeriod = 10
        expected.latencyHistograms = false
        expected.histogramBoundariesUs = [100, 1000, 10000]
        expected.period = 900
        expected.flushInterval = 5
        expected.sampleRetention = 3600
        #expect(c == expected)
        #expect(c.ledgerPath == "/srv/vmpulse/ledger.sqlite")
        #expect(try c.listenAddress() == ("0.0.0.0", 9800))
    }

    @Test(arguments: [
        ("colour: blue", "colour", "unknown key"),
        ("sampler:\n  intervall: 2", "sampler.intervall", "unknown key"),
        ("sampler:\n  interval: fast", "sampler.interval", "expected a number"),
        ("sampler:\n  interval: true", "sampler.interval", "expected a number"),
        ("ledger:\n  period: 1.5", "ledger.period", "expected an integer"),
        // YAML 1.1's base-60 integers: Yams trapped on an overflowing one (found by FuzzConfig).
        ("io:\n  histogram_boundaries_us: [18446744073:7:7044674407:3:7:5,  -1]", "io.histogram_boundaries_us", "expected an integer"),
        ("ledger:\n  period: 1:30", "ledger.period", "expected an integer"),
        ("sampler:\n  interval: 1:30", "sampler.interval", "expected a number"),
        ("ledger:\n  period: 99999999999999999999999", "ledger.period", "expected an integer"),
        ("io:\n  latency_histograms: maybe", "io.latency_histograms", "expected true or false"),
        ("io:\n  histogram_boundaries_us: 5", "io.histogram_boundaries_us", "expected a list"),
        ("io:\n  histogram_boundaries_us: [5, 3]", "io.histogram_boundaries_us", "increasing"),
        // Near 2^63 µs the conversion to ns would overflow (a trap before this bound).
        ("io:\n  histogram_boundaries_us: [1, 9223372036854775807]", "io.histogram_boundaries_us", "one hour"),
        ("io:\n  histogram_boundaries_us: [1, 3600000001]", "io.histogram_boundaries_us", "one hour"),
        ("io:\n  histogram_boundaries_us: [-5, 3]", "io.histogram_boundaries_us", "increasing"),
        ("sampler:\n  balloon_stats_period: 9223372036854775807", "sampler.balloon_stats_period", "between 0 and 86400"),
        ("ledger:\n  sample_retention: .inf", "ledger.sample_retention", "expected a number"),
        ("ledger:\n  sample_retention: 1e300", "ledger.sample_retention", "ten years"),
        ("ledger:\n  sample_retention: -1", "ledger.sample_retention", "ten years"),
        ("sampler:\n  interval: .nan", "sampler.interval", "expected a number"),
        ("sampler: 3", "sampler", "expected a mapping"),
        ("listen: nowhere", "listen", "not HOST:PORT"),
        ("listen: 127.0.0.1:70000", "listen", "not HOST:PORT"),
        ("sampler:\n  interval: 0", "sampler.interval", "between 0.1 and 3600"),
        ("sampler:\n  interval: 20\n  full_interval: 10", "sampler.full_interval", "at least sampler.interval"),
        ("ledger:\n  period: 10", "ledger.period", "between 60"),
        ("ledger:\n  flush_interval: 99999", "ledger.flush_interval", "between 0.1 and ledger.period"),
        ("socket_dir: [a, b]", "socket_dir", "expected text"),
        ("api:\n  idle_timeout: 0", "api.idle_timeout", "between 0.1 and 3600"),
        ("api:\n  idle_timeout: 3601", "api.idle_timeout", "between 0.1 and 3600"),
        ("api:\n  idle_timeout: never", "api.idle_timeout", "expected a number"),
        ("api:\n  max_connections: 0", "api.max_connections", "between 1 and 65536"),
        ("api:\n  max_connections: 9223372036854775807", "api.max_connections", "between 1 and 65536"),
        ("api:\n  max_connections: 2.5", "api.max_connections", "expected an integer"),
        ("api:\n  timeout: 3", "api.timeout", "unknown key"),
        ("api:\n  max_body_bytes: 100", "api.max_body_bytes", "between 1024 and 67108864"),
        ("api:\n  max_batch: 0", "api.max_batch", "between 1 and 100000"),
        ("api:\n  max_batch: -9223372036854775808", "api.max_batch", "between 1 and 100000"),
        ("api:\n  max_subscribers: 5000", "api.max_subscribers", "between 0 and 4096"),
        ("api:\n  subscriber_backlog: 0", "api.subscriber_backlog", "between 1 and 1000000"),
        ("api:\n  token_file: [a]", "api.token_file", "expected text"),
        ("listen: 0.0.0.0:9790", "listen", "set api.token_file"),
        ("listen: 192.168.1.5:9790", "listen", "not a loopback address"),
        ("listen: '[::]:9790'", "listen", "not a loopback address"),
    ])
    func badFilesNameTheKey(yaml: String, key: String, message: String) {
        do {
            _ = try AgentConfig.parse(yaml: yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect(error.key == key, "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
    }

    @Test func theAPILimitsHaveDefaultsAndAreRead() throws {
        #expect(AgentConfig().apiIdleTimeout == 30 && AgentConfig().apiMaxConnections == 256)
        let c = try AgentConfig.parse(yaml: "api:\n  idle_timeout: 2.5\n  max_connections: 16\n")
        #expect(c.apiIdleTimeout == 2.5 && c.apiMaxConnections == 16)
        let d = AgentConfig().api
        #expect(d.tokenFile == nil && d.maxBodyBytes == 1 << 20 && d.maxBatch == 1000 && d.maxSubscribers == 16 && d.subscriberBacklog == 1024)
        let e = try AgentConfig.parse(yaml: """
            listen: 0.0.0.0:9790
            api:
              token_file: /etc/vmpulse/tokens
              max_body_bytes: 4096
              max_batch: 10
              max_subscribers: 2
              subscriber_backlog: 8
            """).api
        #expect(e.tokenFile == "/etc/vmpulse/tokens" && e.maxBodyBytes == 4096 && e.maxBatch == 10 && e.maxSubscribers == 2 && e.subscriberBacklog == 8)
    }

    @Test func loopbackListenersNeedNoToken() throws {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "[::1]"] {
            #expect(APISettings.isLoopback(host), "\(host)")
            #expect(throws: Never.self) { try AgentConfig.parse(yaml: "listen: '\(host):9790'") }
        }
        for host in ["0.0.0.0", "10.0.0.1", "127.0.0.256", "127.0.0", "[::]", "example.org", "128.0.0.1"] {
            #expect(!APISettings.isLoopback(host), "\(host)")
        }
    }

    @Test func tokenFilesAreCheckedBeforeTheAPIOpens() throws {
        let dir = NSTemporaryDirectory() + "vmpulse-tokens-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func tokens(_ text: String?) throws(ConfigError) -> [String] {
            var s = APISettings()
            s.tokenFile = dir + "/tokens"
            if let text { try? text.write(toFile: dir + "/tokens", atomically: true, encoding: .utf8) } else { unlink(dir + "/tokens") }
            return try s.loadTokens()
        }
        #expect(try tokens("# engine\n  0123456789abcdef0123  \n\nsecond-token-for-rotation\n") == ["0123456789abcdef0123", "second-token-for-rotation"])
        for (text, message) in [(nil, "cannot read"), ("# only a comment\n\n", "holds no token"), ("short\n", "shorter than 16")] as [(String?, String)] {
            do {
                _ = try tokens(text)
                Issue.record("accepted \(text ?? "no file")")
            } catch {
                #expect(error.key == "api.token_file" && error.message.contains(message), "\(error)")
            }
        }
        #expect(try APISettings().loadTokens() == [])
    }

    @Test func brokenYAMLIsAnError() {
        #expect(throws: ConfigError.self) { try AgentConfig.parse(yaml: "sampler:\n  interval: [1, 2\n") }
    }

    @Test func aMissingFileIsAnErrorNamingIt() {
        do {
            _ = try AgentConfig.load(file: "/nonexistent/vmpulse.yaml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.description.hasPrefix("/nonexistent/vmpulse.yaml: "))
        }
    }
}
