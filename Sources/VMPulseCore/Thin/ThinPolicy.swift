/// How a thin disk grows: by `chunk` bytes, when less than `(100 - utilizationPercent) %`
/// of a chunk is left free, up to `maximum`. oVirt's defaults are a 2560 MiB chunk and
/// 20 %: the mark sits 80 % of a chunk below the end of the device.
public struct ThinPolicy: Sendable, Equatable {
    public var chunk: UInt64
    public var utilizationPercent: UInt64
    public var maximum: UInt64

    public init(chunk: UInt64, utilizationPercent: UInt64, maximum: UInt64) {
        self.chunk = chunk
        self.utilizationPercent = min(utilizationPercent, 99)
        self.maximum = maximum
    }

    /// The write threshold for a device of `physical` bytes.
    public func mark(physical: UInt64) -> UInt64 {
        let headroom = chunk / 100 * (100 - utilizationPercent) + chunk % 100 * (100 - utilizationPercent) / 100
        return physical > headroom ? physical - headroom : 0
    }

    /// The size to extend a device of `physical` bytes to.
    public func nextSize(physical: UInt64) -> UInt64 {
        min(physical &+ chunk, maximum)
    }
}
