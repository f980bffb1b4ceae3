import Foundation
internal import CLibvirt

/// The events of one connection, fanned out to every stream `events()` handed out.
///
/// libvirt calls the C callbacks below on the event loop thread with `opaque` pointing at the
/// hub (one retain per registration, released by libvirt's free callback when it drops the
/// registration). The hub outlives the connection if libvirt still holds it.
final class EventHub: @unchecked Sendable {
    // @unchecked: `streams`, `nextID` and `finished` are guarded by `lock`.
    private let lock = NSLock()
    private var streams: [UInt64: AsyncStream<LibvirtEvent>.Continuation] = [:]
    private var nextID: UInt64 = 0
    private var finished = false

    /// A new stream, or nil when the hub has finished (connection closed). Unbounded: a one-shot
    /// threshold event must not be dropped; a holder that stops reading should drop the stream.
    func stream() -> AsyncStream<LibvirtEvent>? {
        let (stream, continuation) = AsyncStream<LibvirtEvent>.makeStream(bufferingPolicy: .unbounded)
        let id: UInt64? = lock.withLock {
            guard !finished else { return nil }
            let (next, overflow) = nextID.addingReportingOverflow(1)
            guard !overflow else { return nil }
            nextID = next
            streams[next] = continuation
            return next
        }
        guard let id else { return nil }
        continuation.onTermination = { [weak self] _ in
            self?.lock.withLock { _ = self?.streams.removeValue(forKey: id) }
        }
        return stream
    }

    func publish(_ event: LibvirtEvent) {
        let targets = lock.withLock { Array(streams.values) }
        for continuation in targets { continuation.yield(event) }
    }

    /// Ends every stream; later `stream()` calls get nil.
    func finish() {
        let targets: [AsyncStream<LibvirtEvent>.Continuation] = lock.withLock {
            finished = true
            defer { streams = [:] }
            return Array(streams.values)
        }
        for continuation in targets { continuation.finish() }
    }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passRetained(self).toOpaque() }

    static func from(_ opaque: UnsafeMutableRawPointer?) -> EventHub? {
        opaque.map { Unmanaged<EventHub>.fromOpaque($0).takeUnretainedValue() }
    }
}

/// What the hub registered on a connection, to undo at close.
struct EventRegistration {
    var callbackIDs: [Int32] = []
    var closeCallback = false

    /// Registers the three domain events and the close callback. On failure the ones made are undone.
    static func register(_ conn: OpaquePointer, _ hub: EventHub) throws(LibvirtError) -> EventRegistration {
        var made = EventRegistration()
        let domainEvents: [(virDomainEventID, virConnectDomainEventGenericCallback, String)] = [
            (VIR_DOMAIN_EVENT_ID_LIFECYCLE, unsafeBitCast(lifecycle, to: virConnectDomainEventGenericCallback.self), "LIFECYCLE"),
            (VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON, unsafeBitCast(ioErrorReason, to: virConnectDomainEventGenericCallback.self), "IO_ERROR_REASON"),
            (VIR_DOMAIN_EVENT_ID_BLOCK_THRESHOLD, unsafeBitCast(blockThreshold, to: virConnectDomainEventGenericCallback.self), "BLOCK_THRESHOLD"),
        ]
        for (eventID, callback, label) in domainEvents {
            let id = virConnectDomainEventRegisterAny(conn, nil, LibvirtConstants.c(eventID.rawValue), callback, hub.opaque, releaseHub)
            // On failure libvirt may or may not have called the free callback; the hub's retain is
            // leaked rather than risk releasing it twice.
            guard id >= 0 else {
                let error = LibvirtError.last("cannot register libvirt's \(label) domain event")
                made.undo(conn)
                throw error
            }
            made.callbackIDs.append(id)
        }
        guard virConnectRegisterCloseCallback(conn, connectionClosed, hub.opaque, releaseHub) == 0 else {
            let error = LibvirtError.last("cannot register libvirt's connection close callback")
            made.undo(conn)
            throw error
        }
        made.closeCallback = true
        return made
    }

    /// Deregisters everything (errors ignored: the connection may be gone already).
    mutating func undo(_ conn: OpaquePointer) {
        for id in callbackIDs where virConnectDomainEventDeregisterAny(conn, id) != 0 {
            virResetLastError()
        }
        callbackIDs = []
        if closeCallback, virConnectUnregisterCloseCallback(conn, connectionClosed) != 0 {
            virResetLastError()
        }
        closeCallback = false
    }
}

// The C callbacks. They run on the event loop thread; libvirt owns `dom` for the call's length.

private let releaseHub: virFreeCallback = { opaque in
    if let opaque { Unmanaged<EventHub>.fromOpaque(opaque).release() }
}

private let lifecycle: @convention(c) (OpaquePointer?, OpaquePointer?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = {
    _, dom, event, detail, opaque in
    guard let hub = EventHub.from(opaque), let dom else { return 0 }
    hub.publish(.lifecycle(uuid: Domain.uuid(dom), name: Domain.name(dom), event: event, detail: detail))
    return 0
}

private let ioErrorReason: @convention(c) (
    OpaquePointer?, OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?
) -> Void = { _, dom, path, device, action, reason, opaque in
    guard let hub = EventHub.from(opaque), let dom else { return }
    hub.publish(.ioError(
        uuid: Domain.uuid(dom), name: Domain.name(dom), path: string(path), device: string(device),
        action: action, reason: string(reason)))
}

private let blockThreshold: @convention(c) (
    OpaquePointer?, OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UInt64, UInt64, UnsafeMutableRawPointer?
) -> Void = { _, dom, device, path, threshold, excess, opaque in
    guard let hub = EventHub.from(opaque), let dom else { return }
    hub.publish(.blockThreshold(
        uuid: Domain.uuid(dom), name: Domain.name(dom), device: string(device), path: string(path),
        threshold: threshold, excess: excess))
}

private let connectionClosed: virConnectCloseFunc = { _, reason, opaque in
    guard let hub = EventHub.from(opaque) else { return }
    hub.publish(.connectionClosed(reason: reason))
    hub.finish()
}

private func string(_ pointer: UnsafePointer<CChar>?) -> String {
    pointer.map { String(cString: $0) } ?? ""
}
