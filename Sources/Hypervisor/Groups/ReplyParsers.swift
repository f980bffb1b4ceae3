import QMP
import VMPulseCore

/// Every reader of QMP replies in this module, run over one reply: the fuzz target
/// (Fuzz/FuzzQMP) feeds it arbitrary JSON, because a reply is outside input and no reader
/// may trap on any of it (a wrong shape must be a `QMPError.unexpectedReply`).
///
/// `package`, not `public`: the targets of this package see it, users of the library do not.
package enum ReplyParsers {
    /// Runs each reader on `reply` (and on its parts where a reader takes two replies).
    /// Returns how many readers accepted it: the fuzzer only needs them to return.
    @discardableResult
    package static func readAll(_ reply: JSONValue) -> Int {
        var accepted = 0
        func attempt(_ body: () throws -> Void) {
            do {
                try body()
                accepted += 1
            } catch {
                _ = String(describing: error)  // the message is built from the reply too
            }
        }
        // Two replies in one: `[blockstats, nodes]` (the block readers take both).
        let pair = reply.arrayValue.flatMap { $0.count == 2 ? ($0[0], $0[1]) : nil }
        let (first, second) = pair ?? (reply, reply)

        attempt { _ = try StateGroup.params(status: reply) }
        attempt { _ = try IOThreadGroup.params(reply) }
        attempt { _ = try InterfaceGroup.tapNames(reply) }
        attempt {
            let vcpus = try VCPUGroup.vcpus(reply)
            _ = try? VCPUGroup.params(vcpus: vcpus, maximum: try? VCPUGroup.maximum(reply), pid: nil)
        }
        attempt { _ = try VCPUGroup.maximum(reply) }
        attempt { _ = try BalloonGroup.balloonPath(lists: [("/machine/peripheral", first), ("/machine/peripheral-anon", second)]) }
        attempt {
            let maximum = try BalloonGroup.maximum(first)
            let actual = try BalloonGroup.actual(.success(second))
            _ = try BalloonGroup.params(balloonActual: actual, maximumBytes: maximum, guestStats: reply, rssBytes: nil)
        }
        attempt { _ = try BalloonGroup.params(balloonActual: nil, maximumBytes: .max, guestStats: reply, rssBytes: .max) }
        attempt { _ = try ThinDiskReading.noSpace(formatNode: "fmt0", block: first, status: second) }
        for (stats, nodes) in [(first, second), (reply, JSONValue.array([]))] {
            attempt {
                let drives = try BlockGroup.drives(blockstats: stats, nodes: nodes)
                _ = BlockGroup.params(drives)
                _ = IOGroup.params(drives)
                for drive in drives {
                    _ = ThinDiskReading.find(drive: drive.name, node: nil, in: drives)
                    _ = ThinDiskReading.find(drive: nil, node: drive.protocolNode ?? drive.formatNode, in: drives)
                    for histogram in drive.histograms.values {
                        _ = histogram.quantile(0.5)
                        _ = histogram.quantile(0.99)
                        _ = histogram.delta(since: histogram)
                    }
                }
            }
        }
        return accepted
    }
}
