import CZeroMQ
import ChatLog
import ChatWire
import Logging
import Synchronization

/// Publishes events on a PUB socket. `publish` never blocks; a subscriber
/// that falls more than the high-water mark behind loses events, which its
/// sequence numbers reveal.
public final class Publisher: @unchecked Sendable {
    private let reactor: ZMQReactor
    /// Messages wait here for the reactor thread, which hands all of them to
    /// the socket at its next wake.
    fileprivate let queue = OutgoingQueue(limit: .max)

    public init(reactor: ZMQReactor, endpoint: String, logger: Logger) throws {
        self.reactor = reactor
        let socket = try ZMQSocket.bound(context: reactor.context, type: ZMQ_PUB, to: endpoint, highWaterMark: 100_000)
        let driver = Driver(socket: socket, logger: logger)
        driver.publisher = self
        reactor.add(driver)
    }

    /// Queues `[topic, body]` for every subscriber of `topic`.
    public func publish(topic: String, body: [UInt8]) {
        queue.push([Array(topic.utf8), body])
        reactor.wakeUp()
    }

    final class Driver: ReactorDriver {
        let socket: ZMQSocket
        let logger: Logger
        weak var publisher: Publisher?

        init(socket: ZMQSocket, logger: Logger) {
            self.socket = socket
            self.logger = logger
        }

        var wantsWritable: Bool { false }
        func readable(now: UInt64) {}

        func service(now: UInt64) -> UInt64? {
            for message in publisher?.queue.take() ?? [] {
                if case .failed(let error) = socket.send(message) { logger.warning("publish failed", metadata: .fields(.error(error))) }
            }
            return nil
        }

        func stop() {
            _ = service(now: 0)
            socket.close()
        }
    }
}

/// Receives events on a SUB socket and hands each `(topic, body)` to a
/// closure on the reactor thread (keep it short: hand the work on).
public final class Subscriber: @unchecked Sendable {
    public typealias Handler = @Sendable (_ topic: String, _ body: [UInt8]) -> Void

    public convenience init(reactor: ZMQReactor, endpoint: String, topics: [String] = [""], logger: Logger, handler: @escaping Handler)
        throws
    {
        try self.init(reactor: reactor, endpoints: [endpoint], topics: topics, logger: logger, handler: handler)
    }

    /// Subscribes to every one of `endpoints` (several stores' streams, interleaved).
    public init(reactor: ZMQReactor, endpoints: [String], topics: [String] = [""], logger: Logger, handler: @escaping Handler)
        throws
    {
        let socket = try ZMQSocket(context: reactor.context, type: ZMQ_SUB)
        try socket.set(ZMQ_LINGER, 0)
        try socket.set(ZMQ_RCVHWM, 100_000)
        try socket.set(ZMQ_RECONNECT_IVL, 100)
        try socket.set(ZMQ_RECONNECT_IVL_MAX, 2000)
        for topic in topics { try socket.set(ZMQ_SUBSCRIBE, bytes: Array(topic.utf8)) }
        for endpoint in endpoints { try socket.connect(endpoint) }
        reactor.add(Driver(socket: socket, logger: logger, handler: handler))
    }

    final class Driver: ReactorDriver {
        let socket: ZMQSocket
        let logger: Logger
        let handler: Handler

        init(socket: ZMQSocket, logger: Logger, handler: @escaping Handler) {
            self.socket = socket
            self.logger = logger
            self.handler = handler
        }

        var wantsWritable: Bool { false }

        func readable(now: UInt64) {
            for _ in 0..<1024 {
                do {
                    guard let frames = try socket.receive() else { return }
                    guard frames.count == 2 else {
                        logger.warning("malformed event dropped", metadata: .fields(.value("frames", "\(frames.count)")))
                        continue
                    }
                    handler(String(decoding: frames[0], as: UTF8.self), frames[1])
                } catch {
                    logger.warning("event receive failed", metadata: .fields(.error(error)))
                    return
                }
            }
        }

        func service(now: UInt64) -> UInt64? { nil }
        func stop() { socket.close() }
    }
}
