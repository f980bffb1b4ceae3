import Foundation
internal import CLibvirt
import Logging

/// A connection to libvirtd (`virConnectPtr`). Every call is synchronous and may block (libvirt
/// waits up to 30 s for a busy domain unless told NOWAIT): run them on threads of your own.
///
/// Safe to use from several threads at once (libvirt's client is thread-safe). Each call holds
/// a reference of its own on the C connection, so `close()` from another thread never frees it
/// under a call in flight; calls begun after `close()` throw a `LibvirtError` with `isClosed`.
public final class LibvirtConnection: @unchecked Sendable {
    // @unchecked: `conn` and `registration` are guarded by `lock`; the rest is immutable.
    public let uri: String
    private let logger: Logger
    private let lock = NSLock()
    private var conn: OpaquePointer?
    private var registration: EventRegistration?
    private let hub = EventHub()

    private init(uri: String, conn: OpaquePointer, logger: Logger) {
        self.uri = uri
        self.conn = conn
        self.logger = logger
    }

    deinit { close() }

    /// Opens a read-write connection. Registers libvirt's event loop first (once per process,
    /// which libvirt needs before any open for events and keepalive), then sets a keepalive of
    /// 5 s x 3 so that a dead libvirtd is noticed within about 20 s.
    public static func open(uri: String, logger: Logger = Logger(label: "vmpulse.libvirt")) throws(LibvirtError) -> LibvirtConnection {
        try EventLoop.start()
        guard let conn = virConnectOpen(uri) else {
            throw LibvirtError.last("cannot connect to libvirt at '\(uri)'")
        }
        if virConnectSetKeepAlive(conn, 5, 3) < 0 {
            // Drivers without a daemon (test:///default) have no keepalive; that is fine.
            let error = LibvirtError.last("virConnectSetKeepAlive")
            logger.debug("no keepalive on \(uri): \(error)")
        }
        return LibvirtConnection(uri: uri, conn: conn, logger: logger)
    }

    /// Closes the connection: deregisters the event callbacks, ends the event streams, and drops
    /// the connection (calls in flight finish on their own reference). Idempotent.
    public func close() {
        let (closing, events): (OpaquePointer?, EventRegistration?) = lock.withLock {
            defer {
                conn = nil
                registration = nil
            }
            return (conn, registration)
        }
        guard let closing else { return }
        if var events { events.undo(closing) }
        hub.finish()
        if virConnectClose(closing) < 0 { virResetLastError() }
    }

    /// Whether the connection still works (`virConnectIsAlive`); false after `close()`.
    public var isAlive: Bool {
        (try? withConnection("virConnectIsAlive") { conn throws(LibvirtError) in virConnectIsAlive(conn) == 1 }) ?? false
    }

    /// Registers the lifecycle, IO_ERROR_REASON and BLOCK_THRESHOLD domain events (all domains)
    /// and the close callback, once per connection, and returns a stream of them. Several streams
    /// may be taken; each gets every event from the moment it is taken. The callbacks run on the
    /// event loop thread; the streams buffer without bound, so read them or drop them.
    ///
    /// Streams end at `close()`, or after `.connectionClosed` when libvirtd goes away (open a new
    /// connection then). When registering fails, or the connection is already lost or closed,
    /// the streams deliver `.connectionClosed(reason: closeReasonError)` and end.
    public func events() -> AsyncStream<LibvirtEvent> {
        // The stream first, so that nothing between registration and it is missed.
        guard let stream = hub.stream() else { return Self.closedStream() }
        do throws(LibvirtError) {
            try withConnection("register libvirt events") { conn throws(LibvirtError) in
                lock.lock()
                defer { lock.unlock() }
                guard registration == nil, self.conn != nil else { return }
                registration = try EventRegistration.register(conn, hub)
            }
        } catch {
            if !error.isClosed { logger.warning("\(error)") }
            hub.publish(.connectionClosed(reason: LibvirtConstants.closeReasonError))
            hub.finish()
        }
        return stream
    }

    private static func closedStream() -> AsyncStream<LibvirtEvent> {
        AsyncStream { continuation in
            continuation.yield(.connectionClosed(reason: LibvirtConstants.closeReasonError))
            continuation.finish()
        }
    }

    // MARK: - Domains and stats

    /// The active (running or paused) domains, from `virConnectListAllDomains(ACTIVE)`, with
    /// each one's state (one more call per domain). A domain that goes away while it is being
    /// listed (or whose state cannot be read) is left out.
    public func domains() throws(LibvirtError) -> [LibvirtDomainInfo] {
        try listActive { dom throws(LibvirtError) in
            do throws(LibvirtError) {
                return try Domain.info(dom, "virConnectListAllDomains")
            } catch where !error.isConnectionLost {
                // Gone since it was listed: libvirt then fails its state without always
                // saying NO_DOMAIN (a transient domain destroyed mid-list gave no error at
                // all here). Left out; the next listing shows it again if it is there.
                return nil
            }
        }
    }

    /// The active domains' names, UUIDs and ids in one call to libvirtd (`domains()` asks each
    /// domain's state besides, one call per domain): for discovery every second.
    public func activeDomains() throws(LibvirtError) -> [LibvirtDomainInfo] {
        try listActive { dom throws(LibvirtError) in Domain.listed(dom) }
    }

    /// `virConnectListAllDomains(ACTIVE)`, each handle read by `read` (nil: left out) and freed.
    private func listActive(_ read: (OpaquePointer) throws(LibvirtError) -> LibvirtDomainInfo?) throws(LibvirtError) -> [LibvirtDomainInfo] {
        try withConnection("virConnectListAllDomains") { conn throws(LibvirtError) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = virConnectListAllDomains(conn, &list, VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue)
            guard count >= 0 else { throw LibvirtError.last("cannot list libvirt domains (virConnectListAllDomains)") }
            defer {
                for index in 0..<Int(count) { if let dom = list?[index] { virDomainFree(dom) } }
                free(list)
            }
            var result: [LibvirtDomainInfo] = []
            for index in 0..<Int(count) {
                guard let dom = list?[index], let info = try read(dom) else { continue }
                result.append(info)
            }
            return result
        }
    }

    /// `virConnectGetAllDomainStats(ACTIVE [| NOWAIT])`: one record per running or paused domain.
    /// With `noWait`, a domain whose job lock is held gets only the stats readable without it.
    public func allDomainStats(_ groups: LibvirtStatsGroups, noWait: Bool) throws(LibvirtError) -> [LibvirtDomainStats] {
        try withConnection("virConnectGetAllDomainStats") { conn throws(LibvirtError) in
            var flags = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE.rawValue
            if noWait { flags |= VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT.rawValue }
            var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
            guard virConnectGetAllDomainStats(conn, groups.rawValue, &records, flags) >= 0 else {
                throw LibvirtError.last("cannot read domain stats (virConnectGetAllDomainStats)")
            }
            defer { virDomainStatsRecordListFree(records) }
            return TypedParams.records(records)
        }
    }

    /// `virDomainListGetStats` for these domains (UUIDs, any case). Domains that no longer exist
    /// are left out, not an error; an empty list gives an empty result.
    public func domainStats(uuids: [String], _ groups: LibvirtStatsGroups, noWait: Bool) throws(LibvirtError) -> [LibvirtDomainStats] {
        try withConnection("virDomainListGetStats") { conn throws(LibvirtError) in
            var doms: [OpaquePointer?] = []
            defer { for dom in doms { if let dom { virDomainFree(dom) } } }
            for uuid in uuids {
                guard let dom = virDomainLookupByUUIDString(conn, uuid) else {
                    let error = LibvirtError.last("cannot find libvirt domain \(uuid)")
                    if error.isNoDomain { continue }
                    throw error
                }
                doms.append(dom)
            }
            guard !doms.isEmpty else { return [] }
            var list = doms + [nil]
            let flags = noWait ? VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT.rawValue : 0
            var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
            guard virDomainListGetStats(&list, groups.rawValue, &records, flags) >= 0 else {
                throw LibvirtError.last("cannot read domain stats (virDomainListGetStats)")
            }
            defer { virDomainStatsRecordListFree(records) }
            return TypedParams.records(records)
        }
    }

    /// `virDomainGetState`.
    public func state(uuid: String) throws(LibvirtError) -> (state: Int32, reason: Int32) {
        try withDomain(uuid, "virDomainGetState") { dom throws(LibvirtError) in
            var state: Int32 = 0
            var reason: Int32 = 0
            guard virDomainGetState(dom, &state, &reason, 0) == 0 else {
                throw LibvirtError.last("cannot read the state of domain \(uuid)")
            }
            return (state, reason)
        }
    }

    /// `virDomainGetDiskErrors`: disk target ("vda") -> `LibvirtConstants.diskError*`, only disks with an error.
    public func diskErrors(uuid: String) throws(LibvirtError) -> [String: Int32] {
        try withDomain(uuid, "virDomainGetDiskErrors") { dom throws(LibvirtError) in
            let count = virDomainGetDiskErrors(dom, nil, 0, 0)
            guard count >= 0 else { throw LibvirtError.last("cannot read the disk errors of domain \(uuid)") }
            guard count > 0, let capacity = UInt32(exactly: count) else { return [:] }
            var errors = [virDomainDiskError](repeating: virDomainDiskError(), count: Int(count))
            let filled = virDomainGetDiskErrors(dom, &errors, capacity, 0)
            guard filled >= 0 else { throw LibvirtError.last("cannot read the disk errors of domain \(uuid)") }
            defer { for entry in errors { free(entry.disk) } }
            var result: [String: Int32] = [:]
            for entry in errors.prefix(Int(min(filled, count))) {
                guard let disk = entry.disk else { continue }
                result[String(cString: disk)] = entry.error
            }
            return result
        }
    }

    /// `virDomainSetBlockThreshold`: one-shot BLOCK_THRESHOLD event when the allocation of `device`
    /// passes `bytes` (0 disarms). `device` is a disk target ("vda") or a chain element ("vda[1]").
    public func setBlockThreshold(uuid: String, device: String, bytes: UInt64) throws(LibvirtError) {
        try withDomain(uuid, "virDomainSetBlockThreshold") { dom throws(LibvirtError) in
            guard virDomainSetBlockThreshold(dom, device, bytes, 0) == 0 else {
                throw LibvirtError.last("cannot set the block threshold of \(device) on domain \(uuid) to \(bytes) bytes")
            }
        }
    }

    /// `virDomainResume`.
    public func resume(uuid: String) throws(LibvirtError) {
        try withDomain(uuid, "virDomainResume") { dom throws(LibvirtError) in
            guard virDomainResume(dom) == 0 else { throw LibvirtError.last("cannot resume domain \(uuid)") }
        }
    }

    /// `virDomainSuspend` (pauses the guest's vCPUs).
    public func suspend(uuid: String) throws(LibvirtError) {
        try withDomain(uuid, "virDomainSuspend") { dom throws(LibvirtError) in
            guard virDomainSuspend(dom) == 0 else { throw LibvirtError.last("cannot suspend domain \(uuid)") }
        }
    }

    /// `virDomainQemuMonitorCommand` with a QMP command in JSON; returns QEMU's JSON reply.
    /// libvirt marks the domain tainted ("custom-monitor"): use only where libvirt exposes nothing.
    public func qemuMonitorCommand(uuid: String, json: String) throws(LibvirtError) -> String {
        try withDomain(uuid, "virDomainQemuMonitorCommand") { dom throws(LibvirtError) in
            var reply: UnsafeMutablePointer<CChar>?
            guard virDomainQemuMonitorCommand(dom, json, &reply, 0) == 0 else {
                throw LibvirtError.last("QEMU monitor command on domain \(uuid) failed")
            }
            defer { free(reply) }
            return reply.map { String(cString: $0) } ?? ""
        }
    }

    /// `virDomainGetXMLDesc` (live definition).
    public func xmlDescription(uuid: String) throws(LibvirtError) -> String {
        try withDomain(uuid, "virDomainGetXMLDesc") { dom throws(LibvirtError) in
            guard let xml = virDomainGetXMLDesc(dom, 0) else {
                throw LibvirtError.last("cannot read the XML of domain \(uuid)")
            }
            defer { free(xml) }
            return String(cString: xml)
        }
    }

    // MARK: - Owning the C handles

    /// Runs `body` with a reference of its own on the connection (`virConnectRef`), dropped after.
    func withConnection<T>(_ operation: String, _ body: (OpaquePointer) throws(LibvirtError) -> T) throws(LibvirtError) -> T {
        let current: OpaquePointer? = lock.withLock {
            guard let conn, virConnectRef(conn) == 0 else { return nil }
            return conn
        }
        guard let current else { throw LibvirtError.closed(uri, operation) }
        defer { if virConnectClose(current) < 0 { virResetLastError() } }
        return try body(current)
    }

    /// Runs `body` with the domain of that UUID (`virDomainLookupByUUIDString`), freed after.
    func withDomain<T>(_ uuid: String, _ operation: String, _ body: (OpaquePointer) throws(LibvirtError) -> T) throws(LibvirtError) -> T {
        try withConnection(operation) { conn throws(LibvirtError) in
            guard let dom = virDomainLookupByUUIDString(conn, uuid) else {
                throw LibvirtError.last("cannot find libvirt domain \(uuid)")
            }
            defer { virDomainFree(dom) }
            return try body(dom)
        }
    }
}
