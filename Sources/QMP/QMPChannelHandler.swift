import NIOCore
import VMPulseCore

/// The protocol engine of one monitor connection. Lives on the channel's event
/// loop; every method is called there, so its state needs no locks.
///
/// It reads the greeting, correlates replies by `id`, fails each command on its
/// own timeout, and turns any protocol violation into one terminal `QMPError`
/// that fails every waiting command and closes the connection.
final class QMPChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var command: String
        var promise: EventLoopPromise<JSONValue>
        var timer: Scheduled<Void>?
    }

    private let greetingPromise: EventLoopPromise<QMPGreeting>
    private let greetingTimeout: TimeAmount
    private let events: AsyncStream<QMPEvent>.Continuation
    private var context: ChannelHandlerContext?
    private var greeted = false
    private var greetingTimer: Scheduled<Void>?
    private var pending: [UInt64: Pending] = [:]
    /// Ids whose caller stopped waiting (timeout, cancel): a late reply to one of them is dropped,
    /// any other unknown id is a protocol violation. Bounded: the oldest are forgotten first.
    private var abandoned: Set<UInt64> = []
    private var abandonedOrder: [UInt64] = []
    private static let abandonedLimit = 4096
    private(set) var terminalError: QMPError?

    init(greetingPromise: EventLoopPromise<QMPGreeting>, greetingTimeout: TimeAmount, events: AsyncStream<QMPEvent>.Continuation) {
        self.greetingPromise = greetingPromise
        self.greetingTimeout = greetingTimeout
        self.events = events
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timeout = greetingTimeout
        greetingTimer = context.eventLoop.scheduleTask(in: timeout) {
            let handler = bound.value
            guard !handler.greeted else { return }
            handler.terminate(.timedOut(command: "(greeting)", after: .nanoseconds(timeout.nanoseconds)))
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        terminate(.connectionClosed(detail: "handler removed"))
        self.context = nil
    }

    // MARK: commands

    /// Sends one command. `promise` is completed exactly once: with the reply,
    /// the error reply, the timeout, or the connection's terminal error.
    /// With `flush: false` the command waits in NIO's buffer for the next flush, so a batch
    /// goes out in one write.
    func submit(id: UInt64, command: String, arguments: [String: JSONValue]?, timeout: TimeAmount, promise: EventLoopPromise<JSONValue>, flush: Bool = true) {
        if let error = terminalError {
            promise.fail(error)
            return
        }
        guard let context else {
            promise.fail(QMPError.connectionClosed(detail: "not connected"))
            return
        }
        var message: [String: JSONValue] = ["execute": .string(command), "id": .uint(id)]
        if let arguments { message["arguments"] = .object(arguments) }
        let text = JSONText.serialize(.object(message)) + "\n"

        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timer = context.eventLoop.scheduleTask(in: timeout) {
            bound.value.expire(id: id, error: .timedOut(command: command, after: .nanoseconds(timeout.nanoseconds)))
        }
        pending[id] = Pending(command: command, promise: promise, timer: timer)
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        context.write(wrapOutboundOut(buffer), promise: nil)
        if flush { context.flush() }
    }

    func flush() {
        context?.flush()
    }

    /// Stops waiting for a command (its caller was cancelled or gave up).
    func expire(id: UInt64, error: QMPError) {
        guard let entry = pending.removeValue(forKey: id) else { return }
        entry.timer?.cancel()
        rememberAbandoned(id)
        entry.promise.fail(error)
    }

    private func rememberAbandoned(_ id: UInt64) {
        abandoned.insert(id)
        abandonedOrder.append(id)
        if abandonedOrder.count > Self.abandonedLimit {
            let drop = abandonedOrder.count - Self.abandonedLimit
            for old in abandonedOrder.prefix(drop) { abandoned.remove(old) }
            abandonedOrder.removeFirst(drop)
        }
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard terminalError == nil else { return }
        let line = unwrapInboundIn(data)
        let bytes = line.readableBytesView
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        let message: QMPMessage
        do {
            let value = try JSONParser.parse(bytes)
            message = try QMPMessage.classify(value, excerpt: excerpt(of: bytes))
        } catch let error as JSONParseError {
            terminate(.malformedMessage(reason: "not JSON: \(error)", excerpt: excerpt(of: bytes)))
            return
        } catch let error as QMPError {
            terminate(error)
            return
        } catch {
            terminate(.malformedMessage(reason: "\(error)", excerpt: excerpt(of: bytes)))
            return
        }
        handle(message, excerpt: { excerpt(of: bytes) })
    }

    private func handle(_ message: QMPMessage, excerpt: () -> String) {
        switch message {
        case .greeting(let greeting):
            guard !greeted else {
                terminate(.unexpectedMessage("a second greeting: \(excerpt())"))
                return
            }
            greeted = true
            greetingTimer?.cancel()
            greetingPromise.succeed(greeting)
        case _ where !greeted:
            terminate(.notQMP(detail: "expected the QMP greeting first, got: \(excerpt())"))
        case .reply(let id, let result):
            complete(id: id, excerpt: excerpt) { $0.promise.succeed(result) }
        case .error(let id, let errorClass, let description):
            guard id != nil else {
                terminate(.unexpectedMessage("an error reply without an id (QEMU could not read a command): \(errorClass): \(description)"))
                return
            }
            complete(id: id, excerpt: excerpt) {
                $0.promise.fail(QMPError.commandFailed(command: $0.command, errorClass: errorClass, description: description))
            }
        case .event(let event):
            events.yield(event)
        }
    }

    private func complete(id: JSONValue?, excerpt: () -> String, _ body: (Pending) -> Void) {
        guard let number = id?.uint64Value else {
            terminate(.unexpectedMessage("a reply whose id is not one vmpulse sends: \(excerpt())"))
            return
        }
        if let entry = pending.removeValue(forKey: number) {
            entry.timer?.cancel()
            body(entry)
        } else if abandoned.remove(number) != nil {
            return  // a late reply to a command whose caller gave up; expected after a timeout
        } else {
            terminate(.unexpectedMessage("a reply with unknown id \(number): \(excerpt())"))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? QMPError {
            terminate(error)
        } else {
            terminate(.connectionClosed(detail: "\(error)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        terminate(.connectionClosed(detail: greeted ? "QEMU closed the monitor" : "closed before the QMP greeting"))
        context.fireChannelInactive()
    }

    /// Fails everything waiting with `error`, ends the event stream, and closes the connection. Idempotent.
    func terminate(_ error: QMPError) {
        guard terminalError == nil else { return }
        terminalError = error
        greetingTimer?.cancel()
        if !greeted {
            greeted = true
            greetingPromise.fail(error)
        }
        let waiting = pending
        pending.removeAll()
        for (_, entry) in waiting {
            entry.timer?.cancel()
            entry.promise.fail(error)
        }
        events.finish()
        context?.close(promise: nil)
    }
}
