import QMP
import VMPulseCore

extension MachineEvent.Kind {
    /// The typed event for a QMP event the layers above act on; nil for the others.
    /// A member of the wrong type reads as absent (QEMU's schema says what each is).
    init?(qmp event: QMPEvent) {
        switch event.name {
        case "BLOCK_WRITE_THRESHOLD":
            self = .writeThreshold(node: event.data["node-name"]?.stringValue)
        case "BLOCK_IO_ERROR":
            self = .ioError(node: event.data["node-name"]?.stringValue, device: event.data["device"]?.stringValue ?? "",
                            noSpace: event.data["nospace"]?.boolValue == true, paused: event.data["action"]?.stringValue == "stop")
        case "RESUME":
            self = .resumed
        case "STOP":
            self = .paused
        default:
            return nil
        }
    }
}

extension MachineError {
    /// The QMP failure as the backend protocol's error.
    init(_ error: QMPError) {
        switch error {
        case .noListener, .connectFailed: self.init(.gone, error.description)
        case .timedOut, .cancelled: self.init(.timeout, error.description)
        case .commandFailed: self.init(.refused, error.description)
        default: self.init(.failed, error.description)
        }
    }
}
