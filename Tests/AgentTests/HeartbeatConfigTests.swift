import Agent
import Foundation
import Testing

/// `heartbeat:` in the agent's configuration: every key, its defaults, and the errors that name the key.
@Suite struct HeartbeatConfigTests {
    @Test func everyKeyIsRead() throws {
        let c = try AgentConfig.parse(yaml: """
            heartbeat:
              name: host-a
              key_file: /etc/vmpulse/heartbeat.key
              max_clock_skew: 10
              links:
                - name: host-b
                  peer: host-b
                  connect: 10.0.0.2:9791
                  interval: 0.5
                  timeout: 3
                  detector: phi
                  phi_threshold: 9
                  min_std_deviation: 0.2
                  acceptable_pause: 1
                  recovery_pulses: 2
                  on_suspect: [{webhook: "https://ops.example/hook", retries: 1, timeout: 2}]
                  on_dead:
                    - {program: /usr/local/bin/failover, args: [--now], timeout: 20}
                    - {vm: colo-secondary, command: cont}
                    - {notify: host-c}
                  on_alive: [{vm: colo-secondary, command: system_reset}]
                - name: host-c
                  peer: host-c
                  listen: 0.0.0.0:9791
                - name: db
                  guest: db01
                - name: api
                  service: 127.0.0.1:8080
                  send: "GET / HTTP/1.0\\r\\n\\r\\n"
                  expect: "HTTP/1."
            """).heartbeat
        #expect(c.name == "host-a" && c.keyFile == "/etc/vmpulse/heartbeat.key" && c.maxClockSkew == 10)
        #expect(c.links.count == 4)
        let b = c.links[0]
        #expect(b.kind == .peer(peer: "host-b", address: "10.0.0.2:9791", listens: false))
        #expect(b.interval == 0.5 && b.timeout == 3 && b.recoveryPulses == 2)
        #expect(b.detector == .phi(threshold: 9, minStdDeviation: 0.2, acceptablePause: 1))
        #expect(b.onSuspect == [.webhook(url: "https://ops.example/hook", retries: 1, timeout: 2)])
        #expect(b.onDead == [.program(path: "/usr/local/bin/failover", arguments: ["--now"], timeout: 20), .vm(name: "colo-secondary", command: .resume),
                             .notify(link: "host-c")])
        #expect(b.onAlive == [.vm(name: "colo-secondary", command: .reset)])
        #expect(c.links[1].kind == .peer(peer: "host-c", address: "0.0.0.0:9791", listens: true))
        #expect(c.links[1].interval == 1 && c.links[1].timeout == 5 && c.links[1].detector == .fixed && c.links[1].recoveryPulses == 3, "the defaults")
        #expect(c.links[2].kind == .guest(vm: "db01"))
        #expect(c.links[3].kind == .service(address: "127.0.0.1:8080", send: "GET / HTTP/1.0\r\n\r\n", expect: "HTTP/1."))
        #expect(try AgentConfig.parse(yaml: "").heartbeat == HeartbeatSettings(), "no heartbeat by default")
    }

    func refusal(_ yaml: String) -> ConfigError? {
        do {
            _ = try AgentConfig.parse(yaml: yaml)
            return nil
        } catch {
            return error
        }
    }

    @Test func mistakesNameTheKey() {
        let cases: [(String, String, String)] = [
            ("links: [{name: a, peer: b, connect: 'x:1'}]", "heartbeat.key_file", "required for peer links"),
            ("links: [{name: a, peer: b}]", "heartbeat.links[0]", "either listen"),
            ("links: [{name: a, peer: b, listen: 'h:1', connect: 'h:2'}]", "heartbeat.links[0]", "either listen"),
            ("links: [{name: a, guest: vm1, peer: b}]", "heartbeat.links[0]", "exactly one of"),
            ("links: [{guest: vm1}]", "heartbeat.links[0].name", "required"),
            ("links: [{name: a, guest: vm1}, {name: a, guest: vm2}]", "heartbeat.links[1].name", "also the name"),
            ("links: [{name: a, guest: vm1, interval: 0}]", "heartbeat.links[0].interval", "between 0.05"),
            ("links: [{name: a, guest: vm1, interval: 5, timeout: 5}]", "heartbeat.links[0].timeout", "more than the interval"),
            ("links: [{name: a, guest: vm1, detector: swim}]", "heartbeat.links[0].detector", "not a detector"),
            ("links: [{name: a, guest: vm1, phi_threshold: 3}]", "heartbeat.links[0].phi_threshold", "only for detector: phi"),
            ("links: [{name: a, guest: vm1, detector: phi, phi_threshold: 1000}]", "heartbeat.links[0].phi_threshold", "between 0.5"),
            ("links: [{name: a, guest: vm1, recovery_pulses: 0}]", "heartbeat.links[0].recovery_pulses", "between 1"),
            ("links: [{name: a, service: 'nohost'}]", "heartbeat.links[0].service", "not HOST:PORT"),
            ("links: [{name: a, service: 'h:70000'}]", "heartbeat.links[0].service", "not HOST:PORT"),
            ("links: [{name: a, service: 'h:1', send: x}]", "heartbeat.links[0]", "send and expect go together"),
            ("links: [{name: a, guest: v, on_dead: [{vm: v, command: rm}]}]", "heartbeat.links[0].on_dead[0].command", "not a command"),
            ("links: [{name: a, guest: v, on_dead: [{vm: v}]}]", "heartbeat.links[0].on_dead[0].command", "required with vm"),
            ("links: [{name: a, guest: v, on_dead: [{program: /bin/true, vm: v}]}]", "heartbeat.links[0].on_dead[0]", "exactly one of"),
            ("links: [{name: a, guest: v, on_dead: [{program: /bin/true, timeout: 0}]}]", "heartbeat.links[0].on_dead[0].timeout", "between 0 and 3600"),
            ("links: [{name: a, guest: v, on_dead: [{program: /bin/true, retries: 2}]}]", "heartbeat.links[0].on_dead[0].retries", "only for webhook"),
            ("links: [{name: a, guest: v, on_dead: [{webhook: 'ftp://x'}]}]", "heartbeat.links[0].on_dead[0].webhook", "not an http"),
            ("links: [{name: a, guest: v, on_dead: [{webhook: 'http://x', retries: 11}]}]", "heartbeat.links[0].on_dead[0].retries", "between 0 and 10"),
            ("links: [{name: a, guest: v, on_dead: [{notify: b}]}]", "heartbeat.links[0]", "not a heartbeat link"),
            ("links: [{name: a, guest: v, on_dead: [{notify: a}]}]", "heartbeat.links[0]", "not a peer link"),
            ("links: [{name: a, guest: v, on_dead: {program: /bin/true}}]", "heartbeat.links[0].on_dead", "a list of actions"),
            ("links: [{name: a, guest: v, on_fire: []}]", "heartbeat.links[0].on_fire", "unknown key"),
            ("name: \(String(repeating: "x", count: 33))", "heartbeat.name", "at most 32"),
            ("max_clock_skew: 0", "heartbeat.max_clock_skew", "between 1"),
            ("links: {name: a}", "heartbeat.links", "a list of links"),
        ]
        for (yaml, key, words) in cases {
            let error = refusal("heartbeat:\n  " + yaml.replacingOccurrences(of: "\n", with: "\n  ") + "\n")
            #expect(error?.key == key, "\(yaml): \(String(describing: error))")
            #expect(error?.message.contains(words) == true, "\(yaml): \(String(describing: error))")
        }
    }

    @Test func programsAndTheKeyAreCheckedOnTheHostAtStart() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vmpulse-hb-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/notexec", contents: Data("#!/bin/sh\n".utf8))
        func check(_ program: String) -> ConfigError? {
            do {
                try AgentConfig.parse(yaml: "heartbeat:\n  links: [{name: a, guest: v, on_alive: [{program: '\(program)'}]}]\n").heartbeat.checkOnHost()
                return nil
            } catch { return error }
        }
        #expect(check("/bin/true") == nil)
        #expect(check(dir + "/missing")?.message.contains("No such file") == true)
        #expect(check(dir + "/notexec")?.message.contains("not an executable file") == true)
        #expect(check("relative/prog")?.message.contains("not an absolute path") == true)
        #expect(check(dir + "/missing")?.key == "heartbeat.links[0].on_alive[0].program")
        var settings = HeartbeatSettings()
        settings.keyFile = dir + "/no-key"
        #expect(throws: ConfigError.self) { try settings.checkOnHost() }
    }
}
