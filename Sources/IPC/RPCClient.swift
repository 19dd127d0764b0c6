import CZeroMQ
import ChatLog
import ChatWire
import HeapModule
import IPCMessages
import Logging
import Synchronization

/// Calls a remote service over a DEALER socket: any number of calls in
/// flight, each with a request id, a deadline and a typed error.
///
/// `call` never blocks: it queues the request and wakes the reactor. While
/// no peer is connected, requests wait in the queue (the socket is
/// `ZMQ_IMMEDIATE`, so nothing is written into a dead connection) until they
/// can be sent or their deadline passes. A reply that comes after its
/// deadline is dropped.
public final class RPCClient: @unchecked Sendable {
    public typealias Completion = @Sendable (Result<[UInt8], RPCError>) -> Void

    private let reactor: ZMQReactor
    private let driver: Driver
    /// The peer's name, for logs and metrics.
    public let peerName: String
    private let queue = Mutex(Queue())

    struct Request {
        var id: UInt64
        var body: [UInt8]
        var timeoutMs: UInt32
        var deadline: UInt64
        var completion: Completion
    }

    struct Queue {
        var nextId: UInt64 = 1
        var outgoing: [Request] = []
        var stopped = false
    }

    /// Connects to `endpoint`. `name` names the peer in logs.
    public convenience init(reactor: ZMQReactor, endpoint: String, name: String, logger: Logger) throws {
        try self.init(reactor: reactor, endpoints: [endpoint], name: name, logger: logger)
    }

    /// Connects to every one of `endpoints` (several servers of one kind):
    /// requests go round-robin to those connected, so a server that stops
    /// gets no new ones, and a request sent again after a timeout goes to
    /// the next.
    public init(reactor: ZMQReactor, endpoints: [String], name: String, logger: Logger) throws {
        self.reactor = reactor
        self.peerName = name
        // No linger: a request unsent at close has no one waiting for it.
        let socket = try ZMQSocket.dealer(context: reactor.context, connectingTo: endpoints, linger: .zero)
        driver = Driver(socket: socket, name: name, logger: logger)
        driver.client = self
        reactor.add(driver)
    }

    /// Sends `body` and calls `completion` exactly once, on the reactor
    /// thread, with the reply or an error. Keep the completion short: hand
    /// the result to another executor.
    public func call(_ body: [UInt8], timeout: Duration, completion: @escaping Completion) {
        let ms = max(1, min(Int64(UInt32.max), timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        let deadline = MonotonicClock.now() &+ UInt64(ms) * 1_000_000
        let accepted = queue.withLock { queue -> Bool in
            guard !queue.stopped else { return false }
            queue.outgoing.append(
                Request(id: queue.nextId, body: body, timeoutMs: UInt32(ms), deadline: deadline, completion: completion))
            queue.nextId &+= 1
            return true
        }
        guard accepted else {
            completion(.failure(RPCError(.shutdown, "the process is shutting down")))
            return
        }
        reactor.wakeUp()
    }

    /// Sends `body` and waits for the reply or an error.
    public func call(_ body: [UInt8], timeout: Duration) async throws(RPCError) -> [UInt8] {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<[UInt8], RPCError>, Never>) in
            call(body, timeout: timeout) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    fileprivate func takeOutgoing() -> [Request] {
        queue.withLock { queue in
            defer { queue.outgoing.removeAll() }
            return queue.outgoing
        }
    }

    fileprivate func markStopped() -> [Request] {
        queue.withLock { queue in
            queue.stopped = true
            defer { queue.outgoing.removeAll() }
            return queue.outgoing
        }
    }

    /// Reactor-thread state.
    final class Driver: ReactorDriver {
        let socket: ZMQSocket
        let name: String
        let logger: Logger
        weak var client: RPCClient?
        private var pending: [UInt64: Request] = [:]
        private var unsent: [UInt64] = []
        private var deadlines = Heap<Deadline>()

        struct Deadline: Comparable {
            var at: UInt64
            var id: UInt64
            static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.at < rhs.at }
        }

        init(socket: ZMQSocket, name: String, logger: Logger) {
            self.socket = socket
            self.name = name
            self.logger = logger
        }

        var wantsWritable: Bool { !unsent.isEmpty }

        func readable(now: UInt64) {
            while true {
                let frames: [[UInt8]]
                do {
                    guard let received = try socket.receive() else { return }
                    frames = received
                } catch {
                    logger.warning("RPC receive failed", metadata: .fields(.peer(name), .error(error)))
                    return
                }
                guard frames.count == 2, let header = RPCFrame.parseReplyHeader(frames[0]) else {
                    logger.warning("malformed RPC reply dropped", metadata: .fields(.peer(name)))
                    continue
                }
                guard let request = pending.removeValue(forKey: header.id) else { continue }  // late: already timed out
                switch header.status {
                case .ok: request.completion(.success(frames[1]))
                case .failure:
                    request.completion(.failure(RPCError(.remote, String(decoding: frames[1], as: UTF8.self))))
                case .overloaded:
                    request.completion(.failure(RPCError(.overloaded, "\(name) is at its limit of requests in flight")))
                }
            }
        }

        func service(now: UInt64) -> UInt64? {
            if let client {
                for request in client.takeOutgoing() {
                    pending[request.id] = request
                    unsent.append(request.id)
                    deadlines.insert(Deadline(at: request.deadline, id: request.id))
                }
            }
            expire(now: now)
            flush()
            while let top = deadlines.min {
                if pending[top.id] != nil { return top.at }
                deadlines.removeMin()
            }
            return nil
        }

        private func expire(now: UInt64) {
            while let top = deadlines.min, top.at <= now {
                deadlines.removeMin()
                if let request = pending.removeValue(forKey: top.id) {
                    request.completion(.failure(RPCError(.timeout, "\(name) did not answer within \(request.timeoutMs) ms")))
                }
            }
        }

        /// Sends queued requests in order until the socket cannot take more.
        private func flush() {
            var index = 0
            while index < unsent.count {
                let id = unsent[index]
                if let request = pending[id] {
                    let header = RPCFrame.requestHeader(id: id, timeoutMs: request.timeoutMs)
                    switch socket.send([header, request.body]) {
                    case .sent: break
                    case .wouldBlock:
                        unsent.removeFirst(index)
                        return
                    case .failed(let error):
                        pending[id] = nil
                        request.completion(.failure(RPCError(.remote, "cannot send to \(name): \(error)")))
                    }
                }
                index += 1
            }
            unsent.removeAll(keepingCapacity: true)
        }

        func stop() {
            let queued = client?.markStopped() ?? []
            for request in queued { request.completion(.failure(RPCError(.shutdown, "the process is shutting down"))) }
            for (_, request) in pending { request.completion(.failure(RPCError(.shutdown, "the process is shutting down"))) }
            pending.removeAll()
            unsent.removeAll()
            socket.close()
        }
    }
}
