import Crypto
import Foundation
import VMPulseCore

/// One heartbeat frame between two agents: 128 bytes, big-endian, authenticated with
/// HMAC-SHA256 over the first 96 under the key both hosts share.
///
///     0   4  magic "VMPB"          40   8  incarnation (the sender's start, Unix ns)
///     4   1  version (1)           48   8  sequence (from 1, per incarnation)
///     5   1  kind (1 pulse, 2 notice)  56   8  timestamp (Unix ns, the sender's clock)
///     6   1  state (notices: 0 alive, 1 suspect, 2 dead)  64  32  subject (notices: a link's name)
///     7   1  zero                  96  32  HMAC-SHA256 of bytes 0..<96
///     8  32  sender's name (UTF-8, zero padded)
///
/// Fixed-size frames need no length field a peer could lie about: a reader holds at most
/// one frame, and a frame that does not check out ends the connection (no resynchronising
/// inside a stream of garbage).
public struct PulseFrame: Sendable, Equatable {
    public enum Kind: UInt8, Sendable { case pulse = 1, notice = 2 }

    public static let size = 128
    static let signedSize = 96
    static let magic: [UInt8] = Array("VMPB".utf8)
    static let version: UInt8 = 1
    /// The longest sender or subject name, in UTF-8 bytes.
    public static let maxName = 32

    public var kind: Kind
    public var sender: String
    public var incarnation: UInt64
    public var sequence: UInt64
    /// Unix nanoseconds on the sender's clock.
    public var timestamp: UInt64
    /// For a notice: the link whose state changed, and its new state.
    public var subject: String = ""
    public var state: LinkState = .alive

    public init(kind: Kind, sender: String, incarnation: UInt64, sequence: UInt64, timestamp: UInt64, subject: String = "", state: LinkState = .alive) {
        self.kind = kind
        self.sender = sender
        self.incarnation = incarnation
        self.sequence = sequence
        self.timestamp = timestamp
        self.subject = subject
        self.state = state
    }

    /// The frame's bytes, signed with `key`. Names longer than `maxName` bytes are cut
    /// (config validation keeps them within it).
    public func encoded(key: PulseKey) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.replaceSubrange(0..<4, with: Self.magic)
        bytes[4] = Self.version
        bytes[5] = kind.rawValue
        bytes[6] = Self.stateCode(state)
        Self.put(name: sender, into: &bytes, at: 8)
        Self.put(incarnation, into: &bytes, at: 40)
        Self.put(sequence, into: &bytes, at: 48)
        Self.put(timestamp, into: &bytes, at: 56)
        Self.put(name: subject, into: &bytes, at: 64)
        let mac = HMAC<SHA256>.authenticationCode(for: bytes[0..<Self.signedSize], using: key.symmetric)
        bytes.replaceSubrange(Self.signedSize..<Self.size, with: Array(mac))
        return bytes
    }

    /// A frame from `bytes` (exactly `size` of them), checked for shape and signature
    /// only: whether it is fresh is `PulseVerifier`'s business.
    public static func decode(_ bytes: some Collection<UInt8>, key: PulseKey) throws(PulseError) -> PulseFrame {
        let b = Array(bytes)
        guard b.count == size else { throw .truncated(count: b.count) }
        guard Array(b[0..<4]) == magic else { throw .notAPulse }
        guard b[4] == version else { throw .version(b[4]) }
        // The signature before anything else is read: nothing unsigned reaches the parser.
        guard HMAC<SHA256>.isValidAuthenticationCode(b[signedSize..<size], authenticating: b[0..<signedSize], using: key.symmetric) else {
            throw .forged
        }
        guard let kind = Kind(rawValue: b[5]) else { throw .malformed("kind \(b[5]) is neither a pulse (1) nor a notice (2)") }
        guard let state = stateFromCode(b[6]) else { throw .malformed("state \(b[6]) is not 0, 1 or 2") }
        guard let sender = name(b, at: 8), !sender.isEmpty else { throw .malformed("the sender's name is not UTF-8 text") }
        guard let subject = name(b, at: 64) else { throw .malformed("the subject is not UTF-8 text") }
        return PulseFrame(kind: kind, sender: sender, incarnation: number(b, at: 40), sequence: number(b, at: 48),
                          timestamp: number(b, at: 56), subject: subject, state: state)
    }

    static func stateCode(_ state: LinkState) -> UInt8 {
        switch state {
        case .alive: 0
        case .suspect: 1
        case .dead: 2
        }
    }

    static func stateFromCode(_ code: UInt8) -> LinkState? {
        switch code {
        case 0: .alive
        case 1: .suspect
        case 2: .dead
        default: nil
        }
    }

    private static func put(_ value: UInt64, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64(i))) }
    }

    private static func number(_ b: [UInt8], at offset: Int) -> UInt64 {
        b[offset..<offset + 8].reduce(0) { $0 << 8 | UInt64($1) }
    }

    private static func put(name: String, into bytes: inout [UInt8], at offset: Int) {
        for (i, byte) in name.utf8.prefix(maxName).enumerated() { bytes[offset + i] = byte }
    }

    private static func name(_ b: [UInt8], at offset: Int) -> String? {
        let field = b[offset..<offset + maxName]
        let used = field.prefix { $0 != 0 }
        guard field.dropFirst(used.count).allSatisfy({ $0 == 0 }) else { return nil }  // no bytes after the padding
        return String(validating: used, as: UTF8.self)
    }
}

/// Why a frame was not taken as a pulse. Every one is counted on its link.
public enum PulseError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated(count: Int)
    /// The bytes do not start as a vmpulse frame (another protocol, garbage).
    case notAPulse
    case version(UInt8)
    /// The signature is wrong: another key, or bytes changed on the way.
    case forged
    case malformed(String)
    /// Signed by the key, but from another sender than the link's peer.
    case wrongSender(String)
    /// A sequence number already seen (a replayed frame), or an earlier run's frame.
    case replayed(sequence: UInt64)
    case staleIncarnation
    /// The sender's clock and ours disagree by more than the allowed skew.
    case skewed(seconds: Double)

    public var description: String {
        switch self {
        case .truncated(let n): "a frame of \(n) bytes (a heartbeat frame has \(PulseFrame.size))"
        case .notAPulse: "not a vmpulse heartbeat frame (wrong magic): another protocol on this port?"
        case .version(let v): "frame version \(v); this agent speaks version \(PulseFrame.version)"
        case .forged: "the signature does not match: the peer uses another key (heartbeat.key_file), or the frame was altered"
        case .malformed(let why): "a signed frame that makes no sense: \(why)"
        case .wrongSender(let name): "signed by '\(name.prefix(PulseFrame.maxName))', which is not this link's peer"
        case .replayed(let s): "sequence \(s) was already seen: a replayed frame"
        case .staleIncarnation: "a frame from an earlier run of the peer: a replayed frame"
        case .skewed(let s): "the peer's clock is \(Int(s)) s off ours (heartbeat.max_clock_skew): set both clocks with NTP"
        }
    }

    /// The counter it goes to on its link.
    public var isReplay: Bool {
        switch self {
        case .replayed, .staleIncarnation, .skewed: true
        default: false
        }
    }
}

/// Accepts each signed frame of one peer at most once: its run (incarnation) may only go
/// up, and within a run the sequence only up; its timestamp must be within `maxSkew` of
/// our clock, so that a frame captured before this agent restarted (and forgot the last
/// sequence) cannot be replayed later than that.
public struct PulseVerifier: Sendable {
    public let peer: String
    public let maxSkew: Double
    private var incarnation: UInt64 = 0
    private var sequence: UInt64 = 0

    public init(peer: String, maxSkew: Double) {
        self.peer = peer
        self.maxSkew = maxSkew
    }

    /// Takes `frame` if it is the peer's and new; `now` is our wall clock, Unix seconds.
    public mutating func accept(_ frame: PulseFrame, now: Double) throws(PulseError) {
        guard frame.sender == peer else { throw .wrongSender(frame.sender) }
        let sent = Double(frame.timestamp) / 1e9
        guard abs(sent - now) <= maxSkew else { throw .skewed(seconds: sent - now) }
        if frame.incarnation < incarnation { throw .staleIncarnation }
        if frame.incarnation == incarnation, frame.sequence <= sequence { throw .replayed(sequence: frame.sequence) }
        incarnation = frame.incarnation
        sequence = frame.sequence
    }
}
