import Logging

/// Which backend to run, and its settings (the agent's and the CLI's configuration).
public struct BackendOptions: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// Each QEMU's own monitor socket, in `socketDirectory`.
        case qmp
        /// libvirt at `libvirtURI`.
        case libvirt
    }

    public var kind: Kind = .qmp
    /// Where the QMP backend finds the VMs' monitor sockets.
    public var socketDirectory: String = "/run/vmpulse/qmp"
    /// The libvirt connection URI.
    public var libvirtURI: String = "qemu:///system"
    /// The most one VM may take to answer one pass.
    public var timeout: Duration = .seconds(2)
    /// The guest balloon's statistics period, in seconds, set where none is (0: leave alone).
    public var balloonStatsPeriod: Int = 5

    public init() {}
}

/// Makes the backend the options ask for: the only place above which no one knows which it is.
public enum Backends {
    public static func make(_ options: BackendOptions, logger: Logger = Logger(label: "vmpulse.backend")) throws(BackendError) -> any HypervisorBackend {
        switch options.kind {
        case .qmp:
            var qmp = QMPBackend.Options()
            qmp.socketDirectory = options.socketDirectory
            qmp.timeout = options.timeout
            qmp.balloonStatsPeriod = options.balloonStatsPeriod
            return QMPBackend(options: qmp, logger: logger)
        case .libvirt:
            return try LibvirtBackend.connect(options: options, logger: logger)
        }
    }
}
