import CZeroMQ
import ChatLog
import ChatWire
import IPCMessages
import Logging
import Synchronization

/// Serves remote calls on a ROUTER socket. Each request runs as its own
/// task (or where a ``Responder`` hands it), so slow requests do not hold
/// up fast ones; replies are queued back to the reactor thread, which alone
/// touches the socket.
public final class RPCServer: @unchecked Sendable {
    /// Handles one request body and returns the reply body. A thrown error
    /// goes back to the caller as ``RPCError/Code/remote`` with its description.
    public typealias Handler = @Sendable ([UInt8]) async throws -> [UInt8]
    /// Answers one request body by calling its reply function exactly once,
    /// from any thread. Called on the reactor thread, so it must not block:
    /// it hands the work to a thread of its own (``Handler`` runs as a task).
    public typealias Responder = @Sendable (_ body: [UInt8], _ reply: @escaping @Sendable (Result<[UInt8], any Error>) -> Void) -> Void

    private let reactor: ZMQReactor
    private let responder: Responder
    private let logger: Logger
    private let maxInFlight: Int
    private let state = Mutex(State())

    struct Reply {
        var identity: [UInt8]
        var header: [UInt8]
        var body: [UInt8]
    }

    struct State {
        var replies: [Reply] = []
        var inFlight = 0
        var stopped = false
    }

    /// Binds `endpoint`; requests beyond `maxInFlight` at once are refused
    /// with ``RPCError/Code/overloaded`` rather than queued without bound.
    public convenience init(reactor: ZMQReactor, endpoint: String, maxInFlight: Int = 4096, logger: Logger, handler: @escaping Handler)
        throws
    {
        try self.init(reactor: reactor, endpoint: endpoint, maxInFlight: maxInFlight, logger: logger) { body, reply in
            Task {
                do {
                    reply(.success(try await handler(body)))
                } catch {
                    reply(.failure(error))
                }
            }
        }
    }

    /// The same, each request answered through `responder`.
    public init(reactor: ZMQReactor, endpoint: String, maxInFlight: Int = 4096, logger: Logger, responder: @escaping Responder)
        throws
    {
        self.reactor = reactor
        self.responder = responder
        self.logger = logger
        self.maxInFlight = maxInFlight
        let socket = try ZMQSocket.bound(context: reactor.context, type: ZMQ_ROUTER, to: endpoint, highWaterMark: 100_000)
        let driver = Driver(socket: socket, logger: logger)
        driver.server = self
        reactor.add(driver)
    }

    /// Stops taking requests (new ones are refused as overloaded, which the
    /// caller sees at once) and waits up to `limit` for the ones in flight
    /// to finish; their replies go out before the reactor stops.
    public func drain(limit: Duration) async {
        state.withLock { $0.stopped = true }
        let deadline = ContinuousClock.now + limit
        while state.withLock({ $0.inFlight > 0 }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        reactor.wakeUp()
    }

    fileprivate func dispatch(identity: [UInt8], id: UInt64, timeoutMs: UInt32, body: [UInt8]) {
        let admitted = state.withLock { state -> Bool in
            guard !state.stopped, state.inFlight < maxInFlight else { return false }
            state.inFlight += 1
            return true
        }
        guard admitted else {
            enqueue(Reply(identity: identity, header: RPCFrame.replyHeader(id: id, status: .overloaded), body: []), finished: false)
            return
        }
        let deadline = MonotonicClock.now() &+ UInt64(timeoutMs) * 1_000_000
        responder(body) { [self] result in
            let reply: Reply
            switch result {
            case .success(let body):
                reply = Reply(identity: identity, header: RPCFrame.replyHeader(id: id, status: .ok), body: body)
            case .failure(let error):
                reply = Reply(
                    identity: identity, header: RPCFrame.replyHeader(id: id, status: .failure), body: Array("\(error)".utf8))
            }
            if MonotonicClock.now() > deadline {
                logger.debug("reply later than the caller's deadline", metadata: .fields(.value("request", "\(id)")))
            }
            enqueue(reply, finished: true)
        }
    }

    private func enqueue(_ reply: Reply, finished: Bool) {
        state.withLock { state in
            if finished { state.inFlight -= 1 }
            state.replies.append(reply)
        }
        reactor.wakeUp()
    }

    fileprivate func takeReplies() -> [Reply] {
        state.withLock { state in
            defer { state.replies.removeAll() }
            return state.replies
        }
    }

    fileprivate func markStopped() { state.withLock { $0.stopped = true } }

    final class Driver: ReactorDriver {
        let socket: ZMQSocket
        let logger: Logger
        /// Strong: the reactor owns the driver, and the driver the server,
        /// so a server lives as long as its reactor runs.
        var server: RPCServer?
        private var backlog: [Reply] = []

        init(socket: ZMQSocket, logger: Logger) {
            self.socket = socket
            self.logger = logger
        }

        var wantsWritable: Bool { !backlog.isEmpty }

        func readable(now: UInt64) {
            // Bound one pass so a flood cannot starve the replies.
            for _ in 0..<1024 {
                let frames: [[UInt8]]
                do {
                    guard let received = try socket.receive() else { return }
                    frames = received
                } catch {
                    logger.warning("RPC receive failed", metadata: .fields(.error(error)))
                    return
                }
                guard frames.count == 3, let header = RPCFrame.parseRequestHeader(frames[1]) else {
                    logger.warning("malformed RPC request dropped", metadata: .fields(.value("frames", "\(frames.count)")))
                    continue
                }
                server?.dispatch(identity: frames[0], id: header.id, timeoutMs: header.timeoutMs, body: frames[2])
            }
        }

        func service(now: UInt64) -> UInt64? {
            backlog.append(contentsOf: server?.takeReplies() ?? [])
            var index = 0
            while index < backlog.count {
                let reply = backlog[index]
                if case .wouldBlock = socket.send([reply.identity, reply.header, reply.body]) { break }
                index += 1
            }
            backlog.removeFirst(index)
            return nil
        }

        func stop() {
            server?.markStopped()
            _ = service(now: 0)
            socket.close()
        }
    }
}
