import ArgumentParser
import Foundation
import Store
import VMPulseCore

/// `vmpulse billing`: what the ledger holds.
struct BillingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "billing",
        abstract: "Read the billing ledger.",
        subcommands: [Export.self, Gaps.self]
    )

    /// Options shared by the billing commands.
    struct Selection: ParsableArguments {
        @Option(help: "Where the ledger lives (default: the agent's data directory).") var dataDir: String?
        @Option(help: "The agent's configuration file, for its data directory.") var config: String?
        @Option(help: "Start (ISO 8601, UTC when no zone is given), inclusive.") var from: String?
        @Option(help: "End (ISO 8601), exclusive.") var to: String?
        @Option(help: "csv or json.") var format = "csv"
        @Option(help: "Only this VM (name or UUID).") var vm: String?

        func validate() throws {
            guard format == "csv" || format == "json" else { throw ValidationError("--format must be csv or json, got '\(format)'") }
            if let from { _ = try Self.time(from, "--from") }
            if let to { _ = try Self.time(to, "--to") }
        }

        func range() throws -> (from: Double?, to: Double?) {
            (try from.map { try Self.time($0, "--from") }, try to.map { try Self.time($0, "--to") })
        }

        func openLedger() throws -> Ledger {
            let dir = try dataDir ?? AgentSettings.load(file: config).dataDirectory
            let path = dir + "/ledger.sqlite"
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("no ledger at \(path) (has the agent run with this data directory? see --data-dir)")
            }
            return try Ledger.open(path: path, readOnly: true)
        }

        static func time(_ text: String, _ option: String) throws -> Double {
            let withZone = ISO8601DateFormatter()
            withZone.formatOptions = [.withInternetDateTime]
            let fractional = ISO8601DateFormatter()
            fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let dateOnly = ISO8601DateFormatter()
            dateOnly.formatOptions = [.withFullDate]
            for candidate in [text, text + "Z"] {
                for f in [withZone, fractional] {
                    if let d = f.date(from: candidate) { return d.timeIntervalSince1970 }
                }
            }
            if let d = dateOnly.date(from: text) { return d.timeIntervalSince1970 }
            throw ValidationError("\(option) '\(text)' is not an ISO 8601 time (2026-11-22, 2026-11-22T07:00:00Z, 2026-11-22T08:00:00+01:00)")
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the usage of each VM, disk and period (periods starting in [--from, --to)).")

        @OptionGroup var selection: Selection

        func run() async throws {
            let (from, to) = try selection.range()
            let rows = try selection.openLedger().usage(
                from: from.map { Int64($0.rounded(.up)) }, to: to.map { Int64($0.rounded(.up)) }, vm: selection.vm)
            print(selection.format == "json" ? BillingFormat.json(rows) : BillingFormat.csv(rows), terminator: "")
        }
    }

    struct Gaps: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the spans whose usage could not be known (recorded instead of guessed).")

        @OptionGroup var selection: Selection

        func run() async throws {
            let (from, to) = try selection.range()
            let gaps = try selection.openLedger().gaps(from: from, to: to, vm: selection.vm)
            print(selection.format == "json" ? BillingFormat.json(gaps) : BillingFormat.csv(gaps), terminator: "")
        }
    }
}
