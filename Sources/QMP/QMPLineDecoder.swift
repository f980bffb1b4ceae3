import NIOCore

/// Splits the monitor's byte stream into lines (QMP sends one JSON document per
/// line), refusing any line longer than `maxLength`.
///
/// Written here rather than using NIOExtras' LineBasedFrameDecoder because that
/// one has no length limit: a peer sending a 10 MB line would make it buffer
/// all of it. This decoder fails as soon as `maxLength` bytes arrive without a
/// line end, so a connection never holds more than about one limit of data.
/// (`package` for the fuzz target, Fuzz/FuzzQMP.)
package struct QMPLineDecoder: ByteToMessageDecoder {
    package typealias InboundOut = ByteBuffer

    package let maxLength: Int
    /// How far the current partial line has been searched for a newline.
    private var scanned = 0

    package init(maxLength: Int) {
        self.maxLength = maxLength
    }

    package mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        let searchStart = view.index(view.startIndex, offsetBy: min(scanned, view.count))
        guard let newline = view[searchStart...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if view.count > maxLength { throw QMPError.messageTooLarge(limit: maxLength) }
            return .needMoreData
        }
        let length = view.distance(from: view.startIndex, to: newline)
        scanned = 0
        if length > maxLength { throw QMPError.messageTooLarge(limit: maxLength) }
        guard var line = buffer.readSlice(length: length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 1)
        if line.readableBytesView.last == UInt8(ascii: "\r") {
            line.moveWriterIndex(to: line.writerIndex - 1)
        }
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }

    package mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        let leftover = buffer.readableBytesView
        if !leftover.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) {
            let count = leftover.count
            let error = QMPError.connectionClosed(
                detail: "the peer closed the connection in the middle of a message (\(count) bytes without a line end: \(excerpt(of: leftover, limit: 60)))")
            buffer.moveReaderIndex(forwardBy: count)
            throw error
        }
        return .needMoreData
    }
}
