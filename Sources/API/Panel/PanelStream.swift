import Agent
import Hummingbird
import Hypervisor
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import VMPulseCore

/// `GET /v1/panel/stream`: server-sent events for the panel. Every sampling interval it
/// (at most every 5 s) sends an `overview` event (every VM's row) and, with `?vm=ID`, a `vm` event (that VM's
/// detail), each built from the latest snapshots. A stream is a request that never ends,
/// so streams are counted against `api.max_subscribers` (beside the WebSockets), end on
/// the agent's shutdown, and end when the client stops reading (`ConnectionLimitHandler`
/// closes a connection that cannot be written to for `api.idle_timeout`).
struct PanelStream: Sendable {
    let parts: APIParts
    let limits: APILimits
    let logger: Logger
    let open = Count()

    final class Count: Sendable {
        let value = Atomic<Int>(0)
    }

    func response(vm: String?) -> Response {
        guard open.value.add(1, ordering: .relaxed).newValue <= limits.maxSubscribers else {
            open.value.subtract(1, ordering: .relaxed)
            logger.notice("refusing a panel stream: \(limits.maxSubscribers) are open (api.max_subscribers)")
            return APIServer.json(["error": .string("too many panel streams are open (api.max_subscribers is \(limits.maxSubscribers))")],
                                  status: .serviceUnavailable)
        }
        // At most 5 s apart even with a long sampling interval, so the data's age keeps moving.
        let parts = parts, open = open, period = Duration.seconds(min(5, max(0.2, parts.interval)))
        let body = ResponseBody { writer in
            defer { open.value.subtract(1, ordering: .relaxed) }
            let stopping = Atomic<Bool>(false)
            try await withGracefulShutdownHandler {
                while !Task.isCancelled, !stopping.load(ordering: .relaxed) {
                    try await writer.write(ByteBuffer(string: Self.events(parts: parts, vm: vm)))
                    try await Task.sleep(for: period)
                }
            } onGracefulShutdown: {
                stopping.store(true, ordering: .relaxed)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }

    

    /// One update: the `overview` event, then the chosen VM's `vm` event (or `gone` when it is no longer watched).
    static func events(parts: APIParts, vm: String?) -> String {
        let now = MonotonicTime.now(), wall = MonotonicTime.wallNow()
        let vms = parts.store.current(), thin = parts.thin.all()
        var text = frame("overview", PanelData.overview(vms, book: parts.book, thin: thin, now: now, wallNow: wall, interval: parts.interval))
        if let vm {
            if let chosen = vms.first(where: { $0.machine == vm }) {
                text += frame("vm", PanelData.detail(chosen, book: parts.book, thin: thin, now: now, wallNow: wall))
            } else {
                text += frame("gone", ["id": .string(vm)])
            }
        }
        return text
    }

    /// One server-sent event. Compact JSON escapes every line break inside strings, so the
    /// data is one line and a name cannot end the event or forge another.
    static func frame(_ event: String, _ value: JSONValue) -> String {
        "event: \(event)\ndata: " + JSONText.serialize(value) + "\n\n"
    }
}
