/// How a thin disk grows: by `chunk` bytes, when less than `(100 - utilizationPercent) %`
/// of a chunk is left free, up to `maximum`. oVirt's defaults are a 2560 MiB chunk and
/// 20 %: the mark sits 80 % of a chunk below the end of the device.
public struct ThinPolicy: Sendable, Equatable {
    public var chunk: UInt64
    public var utilizationPercent: UInt64
    /// The most the device may grow to; nil: the disk's capacity plus 10 % (what qcow2
    /// needs at most for its metadata, oVirt's rule), learned when the disk is first read.
    public var maximum: UInt64?

    public init(chunk: UInt64, utilizationPercent: UInt64, maximum: UInt64?) {
        self.chunk = chunk
        self.utilizationPercent = min(utilizationPercent, 99)
        self.maximum = maximum
    }

    /// The write threshold for a device of `physical` bytes (0 when the device is smaller
    /// than the headroom: it must grow at once).
    public func mark(physical: UInt64) -> UInt64 {
        // chunk × (100 − u) / 100 without overflowing for any chunk.
        let free = 100 - utilizationPercent
        let headroom = chunk / 100 * free + chunk % 100 * free / 100
        return physical > headroom ? physical - headroom : 0
    }

    /// The size to extend a device of `physical` bytes to, never past `maximum`.
    public func nextSize(physical: UInt64, maximum: UInt64) -> UInt64 {
        physical >= maximum || maximum - physical <= chunk ? maximum : physical + chunk
    }

    /// The maximum for a disk the guest sees as `capacity` bytes.
    public func maximum(capacity: UInt64?) -> UInt64? {
        maximum ?? capacity.map { $0 &+ $0 / 10 }
    }
}
