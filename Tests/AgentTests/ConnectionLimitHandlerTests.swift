@testable import API
import NIOCore
import NIOEmbedded
import Testing

/// A client that stops reading an answer (a panel stream, a large scrape) is closed once
/// its socket has not taken more for the timeout, instead of holding a task for ever.
@Suite struct ConnectionLimitHandlerTests {
    static func channel(timeout: TimeAmount) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ConnectionLimitHandler(table: ConnectionTable(limit: 4), requestTimeout: timeout))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return channel
    }

    @Test func aSocketThatTakesNothingForTheTimeoutIsClosed() throws {
        let channel = try Self.channel(timeout: .seconds(5))
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(channel.isActive, "not yet")
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive, "closed after 5 s without room")
    }

    @Test func aSocketThatDrainsInTimeStaysOpen() throws {
        let channel = try Self.channel(timeout: .seconds(5))
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        #expect(channel.isActive, "a slow reader that keeps up is not cut off")
        _ = try? channel.finish()
    }
}
