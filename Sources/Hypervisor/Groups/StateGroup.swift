import QMP
import VMPulseCore

/// `state`: libvirt's `state.state` and `state.reason`, plus QEMU's own status
/// string and whether the monitor answered.
enum StateGroup {
    static let queries = [QMPQuery("query-status")]

    static func params(status reply: JSONValue) throws(QMPError) -> [StatsParam] {
        let status = try ReplyReader(command: "query-status", value: reply).object().string("status")
        let state = DomainState(qemuStatus: status)
        var w = ParamWriter()
        w.int("state.state", state.state)
        w.int("state.reason", state.reason)
        w.string("state.status", status)
        w.int(MonitorResponse.key, MonitorResponse.responsive)
        return w.params
    }
}
