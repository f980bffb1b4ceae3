import ArgumentParser

@main
struct VMPulseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmpulse",
        abstract: "Watches the QEMU virtual machines of this host.",
        version: "0.1.0",
        subcommands: [StatsCommand.self, AgentCommand.self, BillingCommand.self, RPCCommand.self, HeartbeatCommand.self, EngineCommand.self]
    )
}
