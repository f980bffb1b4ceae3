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
        @Option(help: "Start, inclusive: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS with Z, +HH:MM or no zone (UTC).") var from: String?
        @Option(help: "End, exclusive, in the same forms; after --from.") var to: String?
        @Option(help: "csv or json.") var format = "csv"
        @Option(help: "Only this VM (name or UUID).") var vm: String?

        func validate() throws {
            guard format == "csv" || format == "json" else { throw ValidationError("--format must be csv or json, got '\(format)'") }
            _ = try range()
        }

        /// `[--from, --to)` in Unix seconds. A value that is not a real time (`2026-02-30`,
        /// `T25:61:61Z`) is refused, not normalised; so is a range that selects nothing.
        func range() throws -> (from: Int64?, to: Int64?) {
            try BillingRange.parse(from: from, to: to)
        }

        func openLedger() throws -> Ledger {
            let dir = try dataDir ?? AgentSettings.load(file: config).dataDirectory
            let path = dir + "/ledger.sqlite"
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("no ledger at \(path) (has the agent run with this data directory? see --data-dir)")
            }
            return try Ledger.open(path: path, readOnly: true)
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the usage of each VM, disk and period (periods starting in [--from, --to)).")

        @OptionGroup var selection: Selection

        func run() async throws {
            let (from, to) = try selection.range()
            let rows = try selection.openLedger().usage(from: from, to: to, vm: selection.vm)
            print(selection.format == "json" ? BillingFormat.json(rows) : BillingFormat.csv(rows), terminator: "")
        }
    }

    struct Gaps: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the spans whose usage could not be known (recorded instead of guessed).")

        @OptionGroup var selection: Selection

        func run() async throws {
            let (from, to) = try selection.range()
            let gaps = try selection.openLedger().gaps(from: from.map(Double.init), to: to.map(Double.init), vm: selection.vm)
            print(selection.format == "json" ? BillingFormat.json(gaps) : BillingFormat.csv(gaps), terminator: "")
        }
    }
}

/// `--from` and `--to` of the billing exports (the agent's and the engine's), checked.
enum BillingRange {
    static func parse(from: String?, to: String?) throws -> (from: Int64?, to: Int64?) {
        func parse(_ text: String?, _ option: String) throws -> Int64? {
            guard let text else { return nil }
            do throws(BillingDateError) {
                return try BillingDate.parse(text)
            } catch {
                throw ValidationError("\(option) \(error.message)")
            }
        }
        let (start, end) = (try parse(from, "--from"), try parse(to, "--to"))
        do throws(BillingDateError) {
            try BillingDate.checkRange(from: start, to: end, fromText: from ?? "", toText: to ?? "")
        } catch {
            throw ValidationError(error.message)
        }
        return (start, end)
    }
}
