import QMP
import VMPulseCore

/// `iothread`: QEMU's I/O threads and their adaptive polling settings (`query-iothreads`).
enum IOThreadGroup {
    static let queries = [QMPQuery("query-iothreads")]

    static func params(_ reply: JSONValue) throws(QMPError) -> [StatsParam] {
        let threads = try ReplyReader(command: "query-iothreads", value: reply).array()
        var w = ParamWriter()
        w.uint("iothread.count", UInt64(threads.count))
        for (i, thread) in threads.enumerated() {
            w.string("iothread.\(i).name", try thread.string("id"))
            w.uint("iothread.\(i).thread-id", try thread.uint("thread-id"))
            w.uint("iothread.\(i).poll-max-ns", try thread.uint("poll-max-ns"))
            w.uint("iothread.\(i).poll-grow", try thread.uint("poll-grow"))
            w.uint("iothread.\(i).poll-shrink", try thread.uint("poll-shrink"))
        }
        return w.params
    }
}
