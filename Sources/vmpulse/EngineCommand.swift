import ArgumentParser
import Engine
import Foundation
import Logging
import ServiceLifecycle
import VMPulseCore

/// `vmpulse engine`: the engine side, polling a fleet of agents into a fleet store.
struct EngineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "Poll a fleet of vmpulse agents into a fleet store, and read it.",
        subcommands: [Run.self, Status.self, Billing.self]
    )

    struct Options: ParsableArguments {
        @Option(help: "The engine's configuration file (default \(EngineConfig.defaultPath) when it exists).") var config: String?
        @Option(help: "Agents to poll, NAME=HOST:PORT separated by commas (instead of the file's agents).") var agents: String?
        @Option(help: "The fleet store: a SQLite file path, or postgres://USER@HOST:PORT/DB.") var database: String?

        func load(needAgents: Bool) throws -> EngineConfig {
            var c = EngineConfig()
            if let config {
                c = try EngineConfig.load(file: config)
            } else if access(EngineConfig.defaultPath, F_OK) == 0 {
                c = try EngineConfig.load(file: EngineConfig.defaultPath)
            }
            if let agents {
                c.agents = try agents.split(separator: ",").map { (item) throws(EngineConfigError) in
                    try AgentEndpoint.parse(String(item), key: "--agents")
                }
            }
            if let database { c.database = database }
            if needAgents { try c.validate() } else { _ = try StoreLocation.parse(c.database) }
            return c
        }

        func openStore() async throws -> FleetStore {
            let c = try load(needAgents: false)
            let location = try StoreLocation.parse(c.database)
            if case .sqlite(let path) = location, !FileManager.default.fileExists(atPath: path) {
                throw ValidationError("no fleet store at \(path) (has the engine run with this database? see --database)")
            }
            return try await FleetStore.open(location, readOnly: true)
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Poll every agent (runtime stats often, details on a hash change, devices and billing rarely) until SIGTERM or SIGINT.")

        @OptionGroup var options: Options

        func run() async throws {
            LogSetup.bootstrap(defaultLevel: .info)
            let logger = Logger(label: "vmpulse.engine")
            let service: EngineService
            do {
                let c = try options.load(needAgents: true)
                for a in c.agents { _ = try EngineService.token(a) }
                service = try EngineService(config: c, logger: logger)
            } catch {
                Stderr.write("vmpulse engine: \(error)\n")
                throw ExitCode.failure
            }
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: [ServiceGroupConfiguration.ServiceConfiguration(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the fleet: each host (up or stale, last answer, VM count) and each VM (host, status, CPU, memory, stats age).",
            discussion: "Exit status 0 when every host answers, 3 when one is stale, 1 when the fleet store cannot be read.")

        @OptionGroup var options: Options
        @Flag(help: "JSON instead of tables.") var json = false

        func run() async throws {
            let status: FleetStatus
            do {
                let store = try await options.openStore()
                status = try await FleetStatus.read(store)
                await store.database.close()
            } catch {
                Stderr.write("vmpulse engine status: \(error)\n")
                throw ExitCode.failure
            }
            print(json ? JSONText.pretty(status.json) : status.text, terminator: json ? "\n" : "")
            if !status.allUp { throw ExitCode(3) }
        }
    }

    struct Billing: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "billing", abstract: "Read the fleet's billing, copied from every agent's ledger.", subcommands: [Export.self])

        struct Export: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Write the usage of each host, VM, disk and period (periods starting in [--from, --to)); --by vm sums a VM over its hosts.")

            @OptionGroup var options: Options
            @Option(help: "Start, inclusive (the forms of vmpulse billing export).") var from: String?
            @Option(help: "End, exclusive.") var to: String?
            @Option(help: "csv or json.") var format = "csv"
            @Option(help: "Only this VM (name or UUID).") var vm: String?
            @Option(help: "host (one row per host a VM ran on in a period) or vm (summed over hosts).") var by = "host"

            func validate() throws {
                guard format == "csv" || format == "json" else { throw ValidationError("--format must be csv or json, got '\(format)'") }
                guard by == "host" || by == "vm" else { throw ValidationError("--by must be host or vm, got '\(by)'") }
            }

            func run() async throws {
                let (start, end) = try BillingRange.parse(from: from, to: to)
                let store = try await options.openStore()
                let rows = try await store.billing(from: start, to: end, vm: vm)
                await store.database.close()
                if by == "vm" {
                    let summed = try FleetStore.byVM(rows)
                    print(format == "json" ? BillingFormat.json(summed) : BillingFormat.csv(summed), terminator: "")
                } else {
                    let usage = rows.map(\.usage), hosts = rows.map(\.host)
                    print(format == "json" ? BillingFormat.json(usage, hosts: hosts) : BillingFormat.csv(usage, hosts: hosts), terminator: "")
                }
            }
        }
    }
}
