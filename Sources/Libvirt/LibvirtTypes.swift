internal import CLibvirt

/// One value of a libvirt typed parameter (`virTypedParameter`).
public enum LibvirtValue: Sendable, Equatable {
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case bool(Bool)
    case string(String)
}

/// A named typed parameter, as libvirt names it (`block.0.wr.bytes`).
public struct LibvirtParam: Sendable, Equatable {
    public var name: String
    public var value: LibvirtValue

    public init(name: String, value: LibvirtValue) {
        self.name = name
        self.value = value
    }
}

/// One domain's record from `virConnectGetAllDomainStats` / `virDomainListGetStats`.
public struct LibvirtDomainStats: Sendable {
    public var name: String
    /// Lowercase, as `virDomainGetUUIDString` prints it.
    public var uuid: String
    public var params: [LibvirtParam]

    public init(name: String, uuid: String, params: [LibvirtParam]) {
        self.name = name
        self.uuid = uuid
        self.params = params
    }

    /// The first parameter of that name.
    public subscript(name: String) -> LibvirtValue? {
        params.first { $0.name == name }?.value
    }
}

/// The stats groups of `virDomainStatsTypes` (`VIR_DOMAIN_STATS_*`).
public struct LibvirtStatsGroups: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let state = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_STATE.rawValue)
    public static let cpuTotal = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_CPU_TOTAL.rawValue)
    public static let balloon = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_BALLOON.rawValue)
    public static let vcpu = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_VCPU.rawValue)
    public static let interface = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_INTERFACE.rawValue)
    public static let block = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_BLOCK.rawValue)
    public static let perf = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_PERF.rawValue)
    public static let iothread = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_IOTHREAD.rawValue)
    public static let memory = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_MEMORY.rawValue)
    public static let dirtyrate = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_DIRTYRATE.rawValue)
    public static let vm = LibvirtStatsGroups(rawValue: VIR_DOMAIN_STATS_VM.rawValue)
}

/// A domain as `virConnectListAllDomains` lists it.
public struct LibvirtDomainInfo: Sendable, Equatable {
    public var name: String
    /// Lowercase.
    public var uuid: String
    /// -1 when the domain is not running.
    public var id: Int32
    /// `virDomainState` (see `LibvirtConstants`).
    public var state: Int32
    /// The reason, whose meaning depends on `state` (`virDomainPausedReason`, ...).
    public var reason: Int32
    public var isActive: Bool

    public init(name: String, uuid: String, id: Int32, state: Int32, reason: Int32, isActive: Bool) {
        self.name = name
        self.uuid = uuid
        self.id = id
        self.state = state
        self.reason = reason
        self.isActive = isActive
    }
}

/// What `LibvirtConnection.events()` delivers.
public enum LibvirtEvent: Sendable, Equatable {
    /// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`: `event` is a `virDomainEventType`, `detail` its detail enum.
    case lifecycle(uuid: String, name: String, event: Int32, detail: Int32)
    /// `VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON`: `reason` is "enospc" when the disk ran out of space.
    case ioError(uuid: String, name: String, path: String, device: String, action: Int32, reason: String)
    /// `VIR_DOMAIN_EVENT_ID_BLOCK_THRESHOLD`: one-shot; `device` as it was set (`vda` or `vda[1]`).
    case blockThreshold(uuid: String, name: String, device: String, path: String, threshold: UInt64, excess: UInt64)
    /// The connection closed under us (`virConnectCloseReason`); the stream ends after this event.
    case connectionClosed(reason: Int32)
}

/// libvirt's enum values the backend needs, as plain Int32.
public enum LibvirtConstants {
    // virDomainState
    public static let domainNoState = c(VIR_DOMAIN_NOSTATE.rawValue)
    public static let domainRunning = c(VIR_DOMAIN_RUNNING.rawValue)
    public static let domainBlocked = c(VIR_DOMAIN_BLOCKED.rawValue)
    public static let domainPaused = c(VIR_DOMAIN_PAUSED.rawValue)
    public static let domainShutdown = c(VIR_DOMAIN_SHUTDOWN.rawValue)
    public static let domainShutoff = c(VIR_DOMAIN_SHUTOFF.rawValue)
    public static let domainCrashed = c(VIR_DOMAIN_CRASHED.rawValue)
    public static let domainPMSuspended = c(VIR_DOMAIN_PMSUSPENDED.rawValue)

    // virDomainPausedReason
    public static let pausedUser = c(VIR_DOMAIN_PAUSED_USER.rawValue)
    public static let pausedIOError = c(VIR_DOMAIN_PAUSED_IOERROR.rawValue)
    public static let pausedStartingUp = c(VIR_DOMAIN_PAUSED_STARTING_UP.rawValue)

    // virDomainDiskErrorCode
    public static let diskErrorNone = c(VIR_DOMAIN_DISK_ERROR_NONE.rawValue)
    public static let diskErrorUnspecified = c(VIR_DOMAIN_DISK_ERROR_UNSPEC.rawValue)
    public static let diskErrorNoSpace = c(VIR_DOMAIN_DISK_ERROR_NO_SPACE.rawValue)

    // virDomainEventType
    public static let eventDefined = c(VIR_DOMAIN_EVENT_DEFINED.rawValue)
    public static let eventUndefined = c(VIR_DOMAIN_EVENT_UNDEFINED.rawValue)
    public static let eventStarted = c(VIR_DOMAIN_EVENT_STARTED.rawValue)
    public static let eventSuspended = c(VIR_DOMAIN_EVENT_SUSPENDED.rawValue)
    public static let eventResumed = c(VIR_DOMAIN_EVENT_RESUMED.rawValue)
    public static let eventStopped = c(VIR_DOMAIN_EVENT_STOPPED.rawValue)
    public static let eventShutdown = c(VIR_DOMAIN_EVENT_SHUTDOWN.rawValue)
    public static let eventPMSuspended = c(VIR_DOMAIN_EVENT_PMSUSPENDED.rawValue)
    public static let eventCrashed = c(VIR_DOMAIN_EVENT_CRASHED.rawValue)

    // virDomainEventSuspendedDetailType / virDomainEventResumedDetailType
    public static let suspendedPaused = c(VIR_DOMAIN_EVENT_SUSPENDED_PAUSED.rawValue)
    public static let suspendedIOError = c(VIR_DOMAIN_EVENT_SUSPENDED_IOERROR.rawValue)
    public static let resumedUnpaused = c(VIR_DOMAIN_EVENT_RESUMED_UNPAUSED.rawValue)

    // virDomainEventIOErrorAction
    public static let errorActionNone = c(VIR_DOMAIN_EVENT_IO_ERROR_NONE.rawValue)
    public static let errorActionPause = c(VIR_DOMAIN_EVENT_IO_ERROR_PAUSE.rawValue)
    public static let errorActionReport = c(VIR_DOMAIN_EVENT_IO_ERROR_REPORT.rawValue)

    // virConnectCloseReason
    public static let closeReasonError = c(VIR_CONNECT_CLOSE_REASON_ERROR.rawValue)
    public static let closeReasonEOF = c(VIR_CONNECT_CLOSE_REASON_EOF.rawValue)
    public static let closeReasonKeepalive = c(VIR_CONNECT_CLOSE_REASON_KEEPALIVE.rawValue)
    public static let closeReasonClient = c(VIR_CONNECT_CLOSE_REASON_CLIENT.rawValue)

    // virErrorNumber values LibvirtError classifies by
    public static let errorNoDomain = c(VIR_ERR_NO_DOMAIN.rawValue)
    public static let errorOperationInvalid = c(VIR_ERR_OPERATION_INVALID.rawValue)
    public static let errorOperationTimeout = c(VIR_ERR_OPERATION_TIMEOUT.rawValue)
    public static let errorOperationFailed = c(VIR_ERR_OPERATION_FAILED.rawValue)
    public static let errorAgentUnresponsive = c(VIR_ERR_AGENT_UNRESPONSIVE.rawValue)
    public static let errorSystem = c(VIR_ERR_SYSTEM_ERROR.rawValue)
    public static let errorRPC = c(VIR_ERR_RPC.rawValue)
    public static let errorNoConnect = c(VIR_ERR_NO_CONNECT.rawValue)
    public static let errorInvalidConnection = c(VIR_ERR_INVALID_CONN.rawValue)
    public static let errorInternal = c(VIR_ERR_INTERNAL_ERROR.rawValue)
    public static let errorInvalidArgument = c(VIR_ERR_INVALID_ARG.rawValue)
    /// virErrorDomain VIR_FROM_RPC (the client's socket layer).
    public static let fromRPC = c(VIR_FROM_RPC.rawValue)

    /// C enum constants are small non-negative numbers; anything else becomes -1.
    static func c(_ value: UInt32) -> Int32 { Int32(exactly: value) ?? -1 }
}
