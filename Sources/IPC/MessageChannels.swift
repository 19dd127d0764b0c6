import CZeroMQ
import ChatLog
import ChatWire
import Logging
import Synchronization

/// Outgoing messages queued by any thread and written by the reactor
/// thread; what the socket cannot take yet waits, up to a bound.
final class OutgoingQueue: Sendable {
    private let queue = Mutex<[[[UInt8]]]>([])
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Queues a multipart message; beyond the bound the oldest is dropped.
    func push(_ frames: [[UInt8]]) {
        queue.withLock { queue in
            queue.append(frames)
            if queue.count > limit { queue.removeFirst(queue.count - limit) }
        }
    }

    func take() -> [[[UInt8]]] {
        queue.withLock { queue in
            defer { queue.removeAll() }
            return queue
        }
    }
}

/// Drives one socket that exchanges whole messages: received messages go to
/// `received` on the reactor thread; queued ones are written in order.
final class MessageDriver: ReactorDriver {
    let socket: ZMQSocket
    let logger: Logger
    let outgoing: OutgoingQueue
    let received: ([[UInt8]]) -> Void
    private var backlog: [[[UInt8]]] = []

    init(socket: ZMQSocket, outgoing: OutgoingQueue, logger: Logger, received: @escaping ([[UInt8]]) -> Void) {
        self.socket = socket
        self.outgoing = outgoing
        self.logger = logger
        self.received = received
    }

    var wantsWritable: Bool { !backlog.isEmpty }

    func readable(now: UInt64) {
        for _ in 0..<1024 {
            do {
                guard let frames = try socket.receive() else { return }
                received(frames)
            } catch {
                logger.warning("receive failed", metadata: .fields(.error(error)))
                return
            }
        }
    }

    func service(now: UInt64) -> UInt64? {
        backlog.append(contentsOf: outgoing.take())
        if backlog.count > outgoing.limit { backlog.removeFirst(backlog.count - outgoing.limit) }
        var index = 0
        while index < backlog.count {
            let result = socket.send(backlog[index])
            if case .wouldBlock = result { break }
            if case .failed(let error) = result { logger.warning("send failed", metadata: .fields(.error(error))) }
            index += 1
        }
        backlog.removeFirst(index)
        return nil
    }

    func stop() {
        _ = service(now: 0)
        socket.close()
    }
}

/// The serving side of a conversation with many peers (ROUTER): messages
/// are addressed by the peer's routing id. Used by udpchat-store to talk to
/// AI workers.
public final class MessageRouter: Sendable {
    /// Receives `(peer, body)` on the reactor thread; keep it short.
    public typealias Handler = @Sendable (_ peer: [UInt8], _ body: [UInt8]) -> Void

    private let reactor: ZMQReactor
    private let outgoing = OutgoingQueue(limit: 100_000)

    public init(reactor: ZMQReactor, bind endpoint: String, logger: Logger, handler: @escaping Handler) throws {
        self.reactor = reactor
        let socket = try ZMQSocket.bound(context: reactor.context, type: ZMQ_ROUTER, to: endpoint)
        reactor.add(
            MessageDriver(socket: socket, outgoing: outgoing, logger: logger) { frames in
                guard frames.count == 2 else {
                    logger.warning("malformed message dropped", metadata: .fields(.value("frames", "\(frames.count)")))
                    return
                }
                handler(frames[0], frames[1])
            })
    }

    /// Sends `body` to `peer`; a peer that went away loses it silently.
    public func send(to peer: [UInt8], _ body: [UInt8]) {
        outgoing.push([peer, body])
        reactor.wakeUp()
    }
}

/// The connecting side (DEALER): one conversation with whichever server is
/// at the endpoint, reconnecting by itself. Used by AI workers.
public final class MessageDealer: Sendable {
    public typealias Handler = @Sendable (_ body: [UInt8]) -> Void

    private let reactor: ZMQReactor
    private let outgoing = OutgoingQueue(limit: 1_000)

    /// `routingId` names this peer to the server (and in its logs).
    public init(reactor: ZMQReactor, connect endpoint: String, routingId: String, logger: Logger, handler: @escaping Handler) throws {
        self.reactor = reactor
        // Half a second for a worker's last results to reach the store.
        let socket = try ZMQSocket.dealer(context: reactor.context, connectingTo: [endpoint], linger: .milliseconds(500), routingId: routingId)
        reactor.add(
            MessageDriver(socket: socket, outgoing: outgoing, logger: logger) { frames in
                guard frames.count == 1 else {
                    logger.warning("malformed message dropped", metadata: .fields(.value("frames", "\(frames.count)")))
                    return
                }
                handler(frames[0])
            })
    }

    /// Queues `body` for the server; waits (bounded) while none is connected.
    public func send(_ body: [UInt8]) {
        outgoing.push([body])
        reactor.wakeUp()
    }
}
