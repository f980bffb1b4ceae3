import Engine
import Testing

@Suite struct EngineConfigTests {
    @Test func everyKeyIsRead() throws {
        var c = try EngineConfig.parse(yaml: """
            agents:
              - name: host-a
                address: 10.0.0.1:9790
                token_file: /etc/vmpulse/engine-token
              - address: "[::1]:9791"
            database: postgres://engine@db.example:5432/fleet
            poll:
              runtime_interval: 2
              device_interval: 60
              billing_interval: 30
              timeout: 4
              stale_after: 3
            """)
        #expect(c.agents == [AgentEndpoint(name: "host-a", host: "10.0.0.1", port: 9790, tokenFile: "/etc/vmpulse/engine-token"),
                             AgentEndpoint(name: "[::1]:9791", host: "::1", port: 9791)])
        #expect(c.database == "postgres://engine@db.example:5432/fleet")
        #expect(c.runtimeInterval == 2 && c.deviceInterval == 60 && c.billingInterval == 30 && c.timeout == 4 && c.staleAfter == 3)
        try c.validate()
        c.agents.append(c.agents[0])
        #expect(throws: EngineConfigError.self) { try c.validate() }
    }

    @Test func defaultsAreTheProposalsIntervals() throws {
        let c = EngineConfig()
        #expect(c.runtimeInterval == 3 && c.deviceInterval == 300 && c.staleAfter == 2)
        #expect(throws: EngineConfigError.self) { try c.validate() }  // no agent
    }

    @Test(arguments: [
        "agentz: []", "agents: 5", "agents: [{name: a}]", "agents: [{address: 'nohost'}]", "agents: [{address: 'h:99999'}]",
        "agents: [{address: 'h:1', colour: red}]", "poll: {runtime_interval: fast}", "poll: {stale_after: 1.5}", "poll: {jitter: 1}",
        "database: 'mysql://x'", "events: maybe", "poll: {runtime_interval: 0}", "poll: {timeout: 1e9}", "poll: {runtime_interval: 1:30}",
    ])
    func aBadFileNamesTheKey(_ yaml: String) {
        #expect(throws: EngineConfigError.self) {
            var c = try EngineConfig.parse(yaml: yaml)
            if c.agents.isEmpty { c.agents = [AgentEndpoint(name: "x", host: "h", port: 1)] }
            try c.validate()
        }
    }

    @Test func agentsFlagForms() throws {
        #expect(try AgentEndpoint.parse("a=127.0.0.1:9790", key: "--agents") == AgentEndpoint(name: "a", host: "127.0.0.1", port: 9790))
        #expect(try AgentEndpoint.parse("127.0.0.1:9790", key: "--agents").name == "127.0.0.1:9790")
        #expect(throws: EngineConfigError.self) { try AgentEndpoint.parse("a=", key: "--agents") }
    }

    @Test func storeLocations() throws {
        #expect(try StoreLocation.parse("/var/lib/vmpulse/fleet.sqlite") == .sqlite(path: "/var/lib/vmpulse/fleet.sqlite"))
        #expect(try StoreLocation.parse("sqlite:/tmp/f.sqlite") == .sqlite(path: "/tmp/f.sqlite"))
        #expect(try StoreLocation.parse("postgres:///fleet?host=/tmp/pg") == .postgres(url: "postgres:///fleet?host=/tmp/pg"))
        #expect(throws: EngineConfigError.self) { try StoreLocation.parse("sqlite:") }
        #expect(try StoreLocation.parse("postgres://engine:s3cret@db:5432/fleet").shown == "postgres://engine:***@db:5432/fleet")
        #expect(try StoreLocation.parse("postgres://engine@db/fleet").shown == "postgres://engine@db/fleet")
    }
}
