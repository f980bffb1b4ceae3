import FuzzSupport
import Hypervisor
import NIOCore
import NIOEmbedded
import QMP
import VMPulseCore

/// What a QMP monitor sends, from the socket up: the line decoder (fed in chunks of
/// varying size, as a socket delivers them), the JSON parser, the message classifier,
/// and every reply reader of the stats groups on each line.
///
/// Input: byte 0 picks the line limit (16 to 16336 bytes: small ones so that inputs reach it, large ones for real replies),
/// byte 1 the chunk sizes, the rest is the stream. Besides not trapping, the decoder
/// must give back exactly the stream's lines (a trailing CR dropped) and refuse a line
/// exactly when it is longer than the limit.
@main enum FuzzQMP {
    static func main() {
        FuzzMain.run { input in
            guard input.count >= 2 else { return }
            let maxLength = 16 + Int(input[0]) * 64
            var chunkSeed = UInt32(input[1]) | 1
            let stream = Array(input.dropFirst(2))

            let channel = EmbeddedChannel(handler: ByteToMessageHandler(QMPLineDecoder(maxLength: maxLength)))
            var lines: [[UInt8]] = []
            var failure: (any Error)?
            var offset = 0
            while offset < stream.count, failure == nil {
                chunkSeed = chunkSeed &* 1_103_515_245 &+ 12_345
                let size = min(stream.count - offset, 1 + Int(chunkSeed >> 16) % 97)
                var buffer = channel.allocator.buffer(capacity: size)
                buffer.writeBytes(stream[offset..<(offset + size)])
                offset += size
                do { try channel.writeInbound(buffer) } catch { failure = error }
                while let line = try? channel.readInbound(as: ByteBuffer.self) { lines.append(Array(line.readableBytesView)) }
            }
            if failure == nil {
                do { _ = try channel.finish() } catch { failure = error }
                while let line = try? channel.readInbound(as: ByteBuffer.self) { lines.append(Array(line.readableBytesView)) }
            } else {
                _ = try? channel.finish()
            }
            check(stream: stream, maxLength: maxLength, lines: lines, failure: failure)

            for line in lines {
                guard let value = try? JSONParser.parse(line) else { continue }
                ReplyParsers.readAll(value)
                do {
                    if case .reply(_, let result) = try QMPMessage.classify(value, excerpt: excerpt(of: line)) {
                        ReplyParsers.readAll(result)
                    }
                } catch {
                    _ = String(describing: error)
                }
            }
        }
    }

    /// The decoder's contract, from the stream alone.
    static func check(stream: [UInt8], maxLength: Int, lines: [[UInt8]], failure: (any Error)?) {
        let segments = stream.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let complete = segments.dropLast()
        let tooLong = segments.contains { $0.count > maxLength }
        let refusedAsTooLong: Bool
        if case .messageTooLarge? = failure as? QMPError { refusedAsTooLong = true } else { refusedAsTooLong = false }
        precondition(tooLong == refusedAsTooLong, "a line over \(maxLength) bytes: \(tooLong), refused as too large: \(refusedAsTooLong)")
        precondition(lines.count <= complete.count, "\(lines.count) lines from \(complete.count) line ends")
        for (line, segment) in zip(lines, complete) {
            let expected = segment.last == UInt8(ascii: "\r") ? Array(segment.dropLast()) : Array(segment)
            precondition(line == expected, "a decoded line differs from the stream's")
        }
        if failure == nil {
            precondition(lines.count == complete.count, "\(lines.count) lines from \(complete.count) line ends and no error")
            let rest = segments.last ?? []
            precondition(rest.allSatisfy { $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }, "a partial message at the end was not reported")
        }
    }
}
