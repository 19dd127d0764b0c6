import ChatClient
import ChatWire
import CryptoExtras
import DequeModule
import Foundation
import NIOCore
import NIOPosix

/// The simulated clients of one event loop: their UDP sockets and
/// sessions. Every method runs on `loop`; the bench runs one worker per
/// core so that the clients use them all.
final class BenchWorker: @unchecked Sendable {
    let loop: any EventLoop
    let server: SocketAddress
    /// udpchat-web's WebSocket endpoint, when the clients go through it.
    let web: BenchWebSocket.Endpoint?
    let requestTimeout: TimeAmount
    var sockets: [any Channel] = []
    private var sessions: [String: BenchSession] = [:]
    private var byIndex: [Int: BenchSession] = [:]
    /// Clients of each socket waiting for a SESSION_INIT reply. Every client
    /// shares one RSA key, so any reply on a socket serves its oldest waiter.
    var handshakes: [Deque<(BenchSession, (Result<Void, BenchError>) -> Void)>] = []
    let handshake: BenchHandshake
    /// Traffic: closed loop (the next message when MESSAGE_SENT arrives) or a fixed interval per client.
    private var traffic: Traffic?
    private var runStart: UInt64 = .max
    private var random = SecureRandom.Pool()
    private var writesPending = false
    /// Clients per socket, and how many were placed so far.
    let perSocket: Int
    var placed = 0

    /// Implementation constants: datagrams read at once, and the largest the
    /// bench expects (a SESSION_INIT reply with a 4096-bit key, a long message).
    static let readBatch = 16
    static let largestDatagram = 16_384
    /// How long a closed-loop client waits after its message or handshake was refused.
    static let refusalPause: TimeAmount = .milliseconds(50)

    struct Traffic {
        var size: Int
        var interval: TimeAmount?
        var messageTimeout: TimeAmount?
        var timers: [RepeatedTask] = []
    }

    /// How long a request waits before it is sent again (nil: never).
    let retryInterval: TimeAmount?

    init(
        loop: any EventLoop, server: SocketAddress, web: BenchWebSocket.Endpoint? = nil, handshake: BenchHandshake,
        requestTimeout: TimeAmount,
        retryInterval: TimeAmount?, perSocket: Int
    ) {
        self.web = web
        self.retryInterval = retryInterval
        self.loop = loop
        self.perSocket = max(1, perSocket)
        self.server = server
        self.handshake = handshake
        self.requestTimeout = requestTimeout
    }

    // MARK: - Sockets

    /// Opens `count` UDP sockets (or WebSockets, with `web`) on this worker's loop.
    func open(sockets count: Int, bindHost: String) async throws {
        for _ in 0..<count {
            let box = WorkerBox(self)
            let channel: any Channel
            if let web {
                channel = try await BenchWebSocket.connect(web, on: loop) { bytes in box.worker?.received(bytes, socket: box.socket) }
            } else {
                channel = try await udpSocket(box, bindHost: bindHost)
            }
            try await loop.submit { [self] in
                let index = sockets.count
                sockets.append(channel)
                handshakes.append([])
                box.socket = index
            }.get()
        }
    }

    private func udpSocket(_ box: WorkerBox, bindHost: String) async throws -> any Channel {
        try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_rcvbuf), value: 8 << 20)
            // recvmmsg: the buffer is shared by the datagrams of one read, so it holds
            // `readBatch` of the largest a bench expects.
            .channelOption(.datagramVectorReadMessageCount, value: Self.readBatch)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.readBatch * Self.largestDatagram))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        DatagramReceiver { bytes, _ in box.worker?.received(bytes, socket: box.socket) })
                }
            }
            .bind(host: bindHost, port: 0)
            .get()
    }

    func close() async {
        let channels = (try? await loop.submit { [self] in sockets }.get()) ?? []
        for channel in channels { try? await channel.close() }
    }

    func write(_ bytes: [UInt8], on socket: Int) {
        let channel = sockets[socket]
        if web != nil {
            channel.write(BenchWebSocket.frame(bytes, allocator: channel.allocator), promise: nil)
        } else {
            channel.write(AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
        }
        if !writesPending {
            writesPending = true
            // Datagrams written in one turn of the loop go out in one flush.
            loop.execute { [self] in
                writesPending = false
                for channel in sockets { channel.flush() }
            }
        }
    }

    // MARK: - Requests

    /// Sends `packet` for client `index` and waits for a response of one of `types`.
    func request(_ index: Int, _ packet: ClientPacket, expecting types: Set<String>) async throws -> ServerPacket {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ServerPacket, any Error>) in
            loop.execute { [self] in
                guard let session = byIndex[index] else {
                    continuation.resume(throwing: BenchError("client \(index) has no session"))
                    return
                }
                send(session, packet, expecting: types) { result in continuation.resume(with: result.mapError { $0 as any Error }) }
            }
        }
    }

    private func send(
        _ session: BenchSession, _ packet: ClientPacket, expecting types: Set<String>, timeout: TimeAmount? = nil,
        done: @escaping (Result<ServerPacket, BenchError>) -> Void
    ) {
        let requestTimeout = timeout ?? self.requestTimeout
        session.requests += 1
        let request = session.requests
        let datagram = session.seal(packet, wallNanoseconds: Self.wallNanoseconds(), random: &random)
        // Like `udpchat` and the web client's connector: a request not answered
        // within a second is sent again as the very same datagram (the server
        // answers a repeat with the same reply), until the timeout.
        let retry = retryInterval.map { interval in
            loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] task in
                guard session.requests == request, session.pending != nil else {
                    task.cancel()
                    return
                }
                write(datagram, on: session.socket)
            }
        }
        let timer = loop.scheduleTask(in: requestTimeout) {
            guard session.requests == request, let pending = session.pending else { return }
            session.pending = nil
            retry?.cancel()
            pending.done(
                .failure(BenchError("no \(types.sorted().joined(separator: "/")) within \(requestTimeout.nanoseconds / 1_000_000) ms")))
        }
        session.pending = (types, done, timer, retry)
        write(datagram, on: session.socket)
    }

    /// Sets a client's room and user after its setup.
    func setRoom(_ index: Int, roomId: String, userId: String, members: Int) async throws {
        try await loop.submit { [self] in
            guard let session = byIndex[index] else { return }
            session.roomId = roomId
            session.userId = userId
            session.roomMembers = members
        }.get()
    }

    // MARK: - Traffic

    /// Every client of this worker starts sending: each its next message as
    /// soon as the last one's MESSAGE_SENT arrives, or one every `interval`.
    /// Messages sent before `measureFrom` (a warm-up) are sent but not counted.
    func startTraffic(size: Int, interval: TimeAmount?, messageTimeout: TimeAmount?, measureFrom start: UInt64) async throws {
        try await loop.submit { [self] in
            runStart = start
            traffic = Traffic(size: size, interval: interval, messageTimeout: messageTimeout)
            let clients = sessions.values.filter { !$0.roomId.isEmpty }.sorted { $0.index < $1.index }
            if let interval {
                for (offset, session) in clients.enumerated() {
                    // Spread the clients' sends over the interval.
                    let delay = TimeAmount.nanoseconds(interval.nanoseconds * Int64(offset) / Int64(max(1, clients.count)))
                    let timer = loop.scheduleRepeatedTask(initialDelay: delay, delay: interval) { [self] _ in
                        sendMessage(session)
                    }
                    traffic!.timers.append(timer)
                }
            } else {
                for session in clients { sendMessage(session) }
            }
        }.get()
    }

    func stopTraffic() async throws {
        try await loop.submit { [self] in
            for timer in traffic?.timers ?? [] { timer.cancel() }
            for session in sessions.values { session.stopped = true }
            traffic = nil
        }.get()
    }

    private func sendMessage(_ session: BenchSession) {
        guard let traffic, !session.stopped, !(traffic.interval == nil && session.sending) else { return }
        session.sequence += 1
        let sentAt = MonotonicClock.now()
        let counted = sentAt >= runStart
        if counted { session.sent += 1 }
        session.sending = true
        let text = BenchText.make(sentAt: sentAt, client: session.index, sequence: session.sequence, size: traffic.size)
        send(session, .message(roomId: session.roomId, content: text), expecting: ["MESSAGE_SENT"], timeout: traffic.messageTimeout) {
            [self] result in
            session.sending = false
            var backOff = false
            switch result {
            case .success(.messageSent(let messageId, _, _, _)): if counted { session.confirmed.append(messageId) }
            case .success(.error(let message)):
                if counted {
                    session.refused += 1
                    session.lastRefusal = message
                }
                backOff = true
            case .success, .failure: if counted { session.unanswered += 1 }
            }
            guard self.traffic?.interval == nil else { return }
            // A refused sender (over its rate) waits a moment, as a person would.
            if backOff {
                loop.scheduleTask(in: Self.refusalPause) { [self] in sendMessage(session) }
            } else {
                sendMessage(session)
            }
        }
    }

    /// What the clients of this worker saw.
    func results() async throws -> [ClientResult] {
        try await loop.submit { [self] in
            sessions.values.map { session in
                ClientResult(
                    index: session.index, roomId: session.roomId, members: session.roomMembers, sent: session.sent,
                    confirmed: session.confirmed, refused: session.refused, unanswered: session.unanswered,
                    lastRefusal: session.lastRefusal,
                    received: session.received, deliveries: session.deliveries, duplicates: session.duplicates,
                    latencies: session.latencies, lastDelivery: session.lastDelivery)
            }
        }.get()
    }

    /// Deliveries of run messages received so far, in all.
    func receivedCount() async throws -> Int {
        try await loop.submit { [self] in sessions.values.reduce(0) { $0 + $1.received.count } }.get()
    }

    // MARK: - Receiving

    func received(_ bytes: [UInt8], socket: Int) {
        // Most datagrams are plain SECURE_MSG envelopes: read without the full parser.
        let fast = bytes.withUnsafeBytes { raw -> SecureEnvelope? in
            guard let fields = HotPaths.secureEnvelope(raw) else { return nil }
            let text = { (range: Range<Int>) in String(decoding: UnsafeRawBufferPointer(rebasing: raw[range]), as: UTF8.self) }
            return SecureEnvelope(sessionId: text(fields.sessionId), nonce: text(fields.nonce), ciphertext: text(fields.ciphertext))
        }
        guard let envelope = fast.map(Envelope.secure) ?? (try? Envelope.decodeResponse(bytes)) else { return }
        switch envelope {
        case .sessionInitReply(let reply):
            guard let (session, done) = handshakes[socket].popFirst() else { return }
            session.handshakeTimer?.cancel()
            session.handshakeRetry?.cancel()
            let cipher: SessionCipher
            switch handshake.open(reply) {
            case .success(let opened): cipher = opened
            case .failure(let error):
                done(.failure(error))
                return
            }
            if session.keep {
                session.id = reply.sessionId
                session.cipher = cipher
                sessions[reply.sessionId] = session
                byIndex[session.index] = session
            }
            done(.success(()))
        case .serverError(let message):
            // Not tied to a session: the first waiting request of this socket takes it.
            if let session = sessions.values.first(where: { $0.socket == socket && $0.pending != nil }), let pending = session.pending {
                session.pending = nil
                pending.timer?.cancel()
                pending.retry?.cancel()
                pending.done(.failure(BenchError("SERVER_ERROR \(message)")))
            } else if let (session, done) = handshakes[socket].popFirst() {
                session.handshakeTimer?.cancel()
                session.handshakeRetry?.cancel()
                done(.failure(BenchError("SERVER_ERROR \(message)")))
            }
        case .secure(let secure):
            guard let session = sessions[secure.sessionId], let cipher = session.cipher, let nonce = Hex.decode(secure.nonce),
                let sealed = Hex.decode(secure.ciphertext), let plain = cipher.open(sealed, nonce: nonce),
                let packet = try? ServerPacket.decode(plain)
            else { return }
            if let msgId = packet.msgId {
                // Like the web client: every copy with a msg_id is acknowledged at once.
                write(session.seal(.ack(msgId: msgId), wallNanoseconds: Self.wallNanoseconds(), random: &random), on: session.socket)
                session.acks += 1
                if case .message(let event) = packet.packet { delivered(event, to: session) }
                return
            }
            // A MESSAGE_SENT for an earlier message (its own copy came first
            // and confirmed it) must not confirm the one now waiting.
            if case .messageSent(_, _, let content, _) = packet.packet,
                !BenchText.isOwn(content, client: session.index, sequence: session.sequence)
            {
                return
            }
            if let pending = session.pending, pending.types.contains(packet.packet.typeName) || packet.packet.typeName == "ERROR" {
                session.pending = nil
                pending.timer?.cancel()
                pending.retry?.cancel()
                pending.done(.success(packet.packet))
            }
        case .sessionInitRequest:
            return
        }
    }

    private func delivered(_ event: MessageEvent, to session: BenchSession) {
        guard let sentAt = BenchText.sentAt(event.content) else { return }
        // The sender's own copy confirms its message to a server that sends no
        // MESSAGE_SENT (the original's first revision), whichever comes first;
        // warm-up messages included, or the closed loop would stall.
        if session.sending, let pending = session.pending, pending.types.contains("MESSAGE_SENT"),
            BenchText.isOwn(event.content, client: session.index, sequence: session.sequence)
        {
            session.pending = nil
            pending.timer?.cancel()
            pending.retry?.cancel()
            pending.done(
                .success(.messageSent(messageId: event.messageId, roomId: event.roomId, content: event.content, timestamp: event.timestamp))
            )
        }
        guard sentAt >= runStart else { return }
        let now = MonotonicClock.now()
        guard session.received.insert(event.messageId).inserted else {
            session.duplicates += 1
            return
        }
        session.deliveries += 1
        session.lastDelivery = now
        session.latencies.append(UInt32(min(UInt64(UInt32.max), (now &- sentAt) / 1000)))
    }

    static func wallNanoseconds() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1_000_000_000) }
}

/// What one client saw, gathered after a run.
struct ClientResult: Sendable {
    var index: Int
    var roomId: String
    var members: Int
    var sent: Int
    var confirmed: [Int64]
    var refused: Int
    var unanswered: Int
    var lastRefusal: String
    var received: Set<Int64>
    var deliveries: Int
    var duplicates: Int
    var latencies: [UInt32]
    var lastDelivery: UInt64
}

/// Lets a channel handler reach its worker and know its socket's number.
/// Weak: a run that fails ends while its sockets may still be receiving.
private final class WorkerBox: @unchecked Sendable {
    weak var worker: BenchWorker?
    var socket = 0
    init(_ worker: BenchWorker) { self.worker = worker }
}
