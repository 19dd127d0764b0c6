import Common
import Crypto
import Foundation
import Logging
import NIOCore

/// The edge's protocol engine. Everything here runs on one event loop:
/// datagrams arrive from the channel handler, RPC replies and store events
/// are handed back to the loop, and a 100 ms tick drives retransmission and
/// housekeeping. Nothing here blocks: every call to another program is
/// asynchronous, and its result re-enters through `loop.execute`.
final class EdgeServer: @unchecked Sendable {
    // Implementation constants.
    /// Handshakes waiting for a signature from udpchat-keys at once; more get an error at once.
    static let maxHandshakesInFlight = 512
    /// Sessions being restored from the store at once, and datagrams held for each meanwhile.
    static let maxRestoring = 1024
    static let maxHeldPerSession = 16
    /// Store requests one session may have waiting.
    static let maxQueuedPerSession = 64
    /// How often the housekeeping tick runs, and how often idle sessions are swept
    /// and liveness reported to the store (no datagram costs a write of its own).
    static let tickInterval: TimeAmount = .milliseconds(100)
    static let sweepInterval: UInt64 = 10_000_000_000
    static let touchInterval: UInt64 = 2_000_000_000

    let settings: EdgeSettings
    let loop: any EventLoop
    let keys: KeysClient
    let store: StoreClient
    let logger: Logger
    private var channel: (any Channel)?

    private var table: SessionTable
    private var delivery: DeliveryQueue<[UInt8]>
    private var restoring: [String: [(SecureEnvelope, Request)]] = [:]
    private var handshakesInFlight = 0
    private var lastSweep: UInt64 = 0
    private var lastTouch: UInt64 = 0
    private var roomSequence: [String: UInt64] = [:]
    private var tickTask: RepeatedTask?
    /// Shutting down: only ACKs are taken (so the copies in flight can still
    /// be confirmed); anything else is dropped unanswered and untouched, and
    /// the client sends it again to the next edge.
    private var draining = false
    /// Unauthenticated work per source address: handshakes (each costs an
    /// RSA signature) and error replies and session lookups.
    private var handshakeLimiter: SourceLimiter<String>
    private var unauthenticatedLimiter: SourceLimiter<String>
    /// LOGIN attempts per source address: password guessing from one place is slow.
    private var loginLimiter: SourceLimiter<String>
    private let metrics = EdgeMetrics()

    init(settings: EdgeSettings, loop: any EventLoop, keys: KeysClient, store: StoreClient, logger: Logger) {
        self.settings = settings
        self.loop = loop
        self.keys = keys
        self.store = store
        self.logger = logger
        table = SessionTable(maxPending: settings.maxPendingHandshakes)
        delivery = DeliveryQueue(timing: settings.deliveryTiming)
        handshakeLimiter = SourceLimiter(rate: settings.handshakesPerSource, burst: 2 * settings.handshakesPerSource)
        unauthenticatedLimiter = SourceLimiter(rate: settings.errorsPerSource, burst: 2 * settings.errorsPerSource)
        loginLimiter = SourceLimiter(rate: settings.loginsPerSourcePerMinute / 60, burst: settings.loginsPerSourcePerMinute)
    }

    /// Starts serving on `channel`.
    func start(channel: any Channel) {
        loop.execute { [self] in
            self.channel = channel
            let now = MonotonicClock.now()
            lastSweep = now
            lastTouch = now
            tickTask = loop.scheduleRepeatedTask(initialDelay: Self.tickInterval, delay: Self.tickInterval) { [self] _ in
                tick()
            }
        }
    }

    /// Graceful shutdown: from now on only ACKs are taken. Waits (at most
    /// `limit`) for the requests in flight to be answered, the handshakes to
    /// be signed and the copies sent to acknowledging clients to be
    /// confirmed, then reports pending liveness to the store.
    func drain(limit: Duration = .seconds(5)) async {
        let deadline = ContinuousClock.now + limit
        _ = try? await loop.submit { [self] in draining = true }.get()
        var (busy, unconfirmed) = (false, 0)
        repeat {
            (busy, unconfirmed) =
                (try? await loop.submit { [self] in (hasWorkInFlight, delivery.awaitedByAcknowledgers) }.get()) ?? (false, 0)
            if !busy && unconfirmed == 0 { break }
            try? await Task.sleep(for: .milliseconds(10))
        } while ContinuousClock.now < deadline
        if busy || unconfirmed > 0 {
            logger.warning("drain limit reached", metadata: ["unconfirmed copies": "\(unconfirmed)", "requests in flight": "\(busy)"])
        } else {
            logger.info("drained: every request answered, every copy to an acknowledging client confirmed")
        }
        let touches: IPCStoreRequest? = try? await loop.submit { [self] in
            tickTask?.cancel()
            return touchRequest()
        }.get()
        guard let touches else { return }
        _ = try? await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await self.store.call(touches) }
            group.addTask { try await Task.sleep(for: limit) }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Requests, handshakes or restores not finished yet.
    private var hasWorkInFlight: Bool {
        handshakesInFlight > 0 || !restoring.isEmpty || table.sessions.values.contains { $0.busy || !$0.queue.isEmpty }
    }

    /// Whether udpchat-keys and udpchat-store answer now (for `/readyz`).
    func peersRespond(within timeout: Duration) async -> (keys: Bool, store: Bool) {
        var identity = IPCKeysRequest()
        identity.getIdentity = IPCGetIdentity()
        var ping = IPCStoreRequest()
        ping.ping = IPCPing()
        let quickKeys = KeysClient(rpc: keys.rpc, timeout: timeout)
        let quickStore = StoreClient(rpc: store.rpc, timeout: timeout)
        async let keysAnswer = try? quickKeys.call(identity)
        async let storeAnswer = try? quickStore.call(ping)
        let (keysResult, storeResult) = await (keysAnswer, storeAnswer)
        let storeOK: Bool
        if case .done? = storeResult?.result { storeOK = true } else { storeOK = false }
        return (keysResult?.identity.publicKeyDer.isEmpty == false, storeOK)
    }

    // MARK: - Datagrams

    /// One datagram from `address`.
    func received(_ bytes: [UInt8], from address: SocketAddress) {
        loop.assertInEventLoop()
        metrics.datagramsIn.increment()
        let request = Request(address: address, size: bytes.count)
        guard bytes.count <= settings.bufferSize else {
            sendError(ProtocolText.packetFailurePrefix + "datagram larger than \(settings.bufferSize) bytes", answering: request)
            return
        }
        let envelope: Envelope
        do {
            envelope = try Envelope.decodeRequest(bytes)
        } catch {
            sendError(error.replyText, answering: request)
            return
        }
        if draining {
            // Only a known session's packet can be an ACK; the rest goes to the next edge.
            if case .secure(let secure) = envelope, table[secure.sessionId] != nil { open(secure, answering: request) }
            return
        }
        switch envelope {
        case .sessionInitRequest(let clientKey): handshake(clientKey: clientKey, answering: request)
        case .secure(let secure): secureMessage(secure, answering: request)
        case .sessionInitReply, .serverError: sendError(ProtocolText.invalidMessageFormat, answering: request)
        }
    }

    // MARK: - Handshake (PROTOCOL.md §2)

    private func handshake(clientKey: String, answering request: Request) {
        let address = request.address
        // Cheap checks before any RSA work: the source's budget, then the global cap.
        guard isExempt(address) || handshakeLimiter.allow(Self.source(address), now: MonotonicClock.now()) else {
            metrics.handshakesDropped.increment()
            logger.debug("handshake over its source's budget dropped", metadata: ["source": "\(Self.source(address))"])
            return
        }
        guard handshakesInFlight < Self.maxHandshakesInFlight else {
            sendError(ProtocolText.packetFailurePrefix + "too many handshakes in progress; try again", answering: request)
            return
        }
        let sessionId = SecureRandom.identifier()
        let cipher = SessionCipher.random()
        let encryptedKey: [UInt8]
        do {
            encryptedKey = try HandshakeCrypto.encrypt(
                sessionKey: cipher.keyBytes, to: try HandshakeCrypto.clientKey(fromBase64: clientKey))
        } catch {
            sendError(ProtocolText.packetFailurePrefix + error.description, answering: request)
            return
        }
        handshakesInFlight += 1
        var sign = IPCSignHandshake()
        sign.sessionID = sessionId
        sign.sessionKey = Data(cipher.keyBytes)
        var signing = IPCKeysRequest()
        signing.signHandshake = sign
        keys.call(signing) { [self] result in
            loop.execute { [self] in
                handshakeSigned(result, sessionId: sessionId, cipher: cipher, encryptedKey: encryptedKey, answering: request)
            }
        }
    }

    private func handshakeSigned(
        _ result: Result<IPCKeysResponse, RPCError>, sessionId: String, cipher: SessionCipher, encryptedKey: [UInt8],
        answering request: Request
    ) {
        let address = request.address
        handshakesInFlight -= 1
        if case .success(let response) = result, case .signedHandshake? = response.result {
            metrics.handshakesOK.increment()
        } else {
            metrics.handshakesFailed.increment()
        }
        let signed: IPCSignedHandshake
        switch result {
        case .success(let response):
            guard case .signedHandshake(let value)? = response.result else {
                logger.error("udpchat-keys refused a handshake: \(response.failure.message)")
                sendError(ProtocolText.packetFailurePrefix + "the key service refused the handshake", answering: request)
                return
            }
            signed = value
        case .failure(let error):
            logger.warning("handshake failed: udpchat-keys \(error)")
            sendError(ProtocolText.packetFailurePrefix + "the key service is unavailable; try again", answering: request)
            return
        }
        let now = MonotonicClock.now()
        table.addPending(
            EdgeSession(
                id: sessionId, cipher: cipher, wrappedKey: [UInt8](signed.wrappedKey),
                keyDigest: [UInt8](SHA256.hash(data: cipher.keyBytes)), persisted: false, state: .handshake,
                address: address, lastSeen: now, lastSeenWall: Self.wallClock(), replay: ReplayWindow(), userId: nil))
        let reply = SessionInitReply(
            sessionId: sessionId, encryptedKey: Hex.encode(encryptedKey), serverPublicKey: Hex.encode([UInt8](signed.publicKeyDer)),
            signature: Hex.encode([UInt8](signed.signature)), fingerprint: signed.fingerprint)
        write(Envelope.sessionInitReply(reply).encoded(), to: address)
    }

    // MARK: - Secure messages (PROTOCOL.md §3)

    private func secureMessage(_ secure: SecureEnvelope, answering request: Request) {
        if table[secure.sessionId] != nil {
            open(secure, answering: request)
            return
        }
        // Not in memory: the session may be in the store (the edge restarted,
        // or another edge made it). Datagrams wait while it is restored.
        if restoring[secure.sessionId] != nil {
            if restoring[secure.sessionId]!.count < Self.maxHeldPerSession { restoring[secure.sessionId]!.append((secure, request)) }
            return
        }
        guard Self.isIdentifier(secure.sessionId) else {
            sendError(ProtocolText.sessionNotFound(ProtocolText.echo(secure.sessionId)), answering: request)
            return
        }
        // A lookup in the store is unauthenticated work: it counts against the source's budget.
        guard isExempt(request.address) || unauthenticatedLimiter.allow(Self.source(request.address), now: MonotonicClock.now()) else {
            return
        }
        guard restoring.count < Self.maxRestoring else {
            sendError(ProtocolText.packetFailurePrefix + "too many sessions being restored; try again", answering: request)
            return
        }
        restoring[secure.sessionId] = [(secure, request)]
        var load = IPCLoadSession()
        load.sessionID = secure.sessionId
        var request = IPCStoreRequest()
        request.loadSession = load
        store.call(request) { [self] result in
            loop.execute { [self] in sessionLoaded(secure.sessionId, result) }
        }
    }

    private func sessionLoaded(_ id: String, _ result: Result<IPCStoreResponse, RPCError>) {
        let loaded: IPCLoadedSession
        switch result {
        case .success(let response):
            guard case .loadedSession(let value)? = response.result, value.found else {
                for (_, request) in restoring.removeValue(forKey: id) ?? [] {
                    sendError(ProtocolText.sessionNotFound(id), answering: request)
                }
                return
            }
            loaded = value
        case .failure(let error):
            logger.warning("restoring a session failed: udpchat-store \(error)", metadata: ["session": "\(id)"])
            for (_, request) in restoring.removeValue(forKey: id) ?? [] {
                sendError(ProtocolText.packetFailurePrefix + "the store is unavailable; try again", answering: request)
            }
            return
        }
        var unwrap = IPCUnwrapSessionKey()
        unwrap.sessionID = id
        unwrap.wrappedKey = loaded.wrappedKey
        var request = IPCKeysRequest()
        request.unwrapSessionKey = unwrap
        keys.call(request) { [self] result in
            loop.execute { [self] in sessionUnwrapped(id, loaded, result) }
        }
    }

    private func sessionUnwrapped(_ id: String, _ loaded: IPCLoadedSession, _ result: Result<IPCKeysResponse, RPCError>) {
        let held = restoring.removeValue(forKey: id) ?? []
        guard case .success(let response) = result, case .unwrapped(let unwrapped)? = response.result,
            let cipher = SessionCipher(keyBytes: [UInt8](unwrapped.sessionKey)), let first = held.first
        else {
            logger.warning("restoring a session failed: its key did not unwrap", metadata: ["session": "\(id)"])
            for (_, request) in held {
                sendError(ProtocolText.packetFailurePrefix + "the session could not be restored; try again", answering: request)
            }
            return
        }
        if table[id] == nil {
            table.addRestored(
                EdgeSession(
                    id: id, cipher: cipher, wrappedKey: [UInt8](loaded.wrappedKey),
                    keyDigest: [UInt8](SHA256.hash(data: cipher.keyBytes)), persisted: true, state: .restored,
                    address: first.1.address, lastSeen: MonotonicClock.now(), lastSeenWall: Self.wallClock(),
                    replay: ReplayWindow(floor: loaded.replayMark), userId: loaded.userID.isEmpty ? nil : loaded.userID))
            logger.debug("session restored", metadata: ["session": "\(id)"])
        }
        for (secure, request) in held { open(secure, answering: request) }
    }

    /// PROTOCOL.md §3.4, reordered so that nothing about the session changes
    /// before the AES-GCM tag verifies (§12 item 4): decode, reject reflected
    /// server nonces, open, check replay, and only then take the address and
    /// liveness.
    private func open(_ secure: SecureEnvelope, answering request: Request) {
        let address = request.address
        guard let session = table[secure.sessionId] else { return }
        guard let nonce = Hex.decode(secure.nonce), nonce.count == WireSpec.nonceBytes else {
            sendError(ProtocolText.decryptionFailed, answering: request)
            return
        }
        if Nonce.isServerNonce(nonce) {
            // One of our own packets sent back (§12 item 5): no reply at all.
            metrics.reflectionsDropped.increment()
            logger.debug("reflected server packet dropped", metadata: ["session": "\(session.id)"])
            return
        }
        guard let sealed = Hex.decode(secure.ciphertext), let plaintext = session.cipher.open(sealed, nonce: nonce) else {
            metrics.decryptFailures.increment()
            if !draining { sendError(ProtocolText.decryptionFailed, answering: request) }
            return
        }
        if draining {
            // Left for the next edge: not marked seen, so it is not a replay there.
            guard case .ack? = try? ClientPacket.decode(plaintext) else { return }
        }
        let verdict = table.update(session.id) { $0.replay.admit(nonce) }
        guard verdict == .accepted else {
            // The same datagram again from the session's own address: the
            // network duplicated it, or a client whose reply was lost retries.
            // It gets the same reply if there was one, else nothing, and the
            // request is not carried out twice. Anything else is a replay.
            guard verdict == .duplicate, address == session.address else {
                metrics.replaysRejected.increment()
                sendError(ProtocolText.nonceReused, answering: request)
                return
            }
            if case .reply(let datagram)? = table.update(session.id, { $0.replies.repeatFor(nonce) }) {
                write(datagram, to: address)
            }
            return
        }
        let now = MonotonicClock.now()
        table.update(session.id) { session in
            session.address = address
            session.lastSeen = now
            session.lastSeenWall = Self.wallClock()
            session.dirty = true
            session.state = .active
        }
        delivery.heard(from: session.id)
        let packet: ClientPacket
        do {
            packet = try ClientPacket.decode(plaintext)
        } catch {
            if let text = error.errorText {
                reply(.error(message: text), session: session, answering: nonce, to: address)
            } else {
                logger.debug("inner packet carrying msg_id dropped", metadata: ["session": "\(session.id)"])
            }
            return
        }
        // Requests (not ACKs, which are many and have no reply) are remembered
        // for a client that sends one again.
        if case .ack = packet {} else { table.update(session.id) { $0.replies.accepted(nonce) } }
        dispatch(packet, sessionId: session.id, nonce: nonce, from: address)
    }

    // MARK: - Inner packets (PROTOCOL.md §5)

    private func dispatch(_ packet: ClientPacket, sessionId: String, nonce: [UInt8], from address: SocketAddress) {
        guard let session = table[sessionId] else { return }
        switch packet {
        case .ack(let msgId):
            if let msgId { perform(delivery.acknowledge(session: sessionId, msgId: msgId, now: MonotonicClock.now())) }
            ensurePersisted(sessionId)
        case .hello:
            reply(.hello(message: ProtocolText.helloMessage), session: session, answering: nonce, to: address)
            ensurePersisted(sessionId)
        case .login where !isExempt(address) && !loginLimiter.allow(Self.source(address), now: MonotonicClock.now()):
            reply(
                .error(message: "Too many login attempts from your address; try again in a minute."), session: session, answering: nonce,
                to: address)
        default:
            guard let op = Translation.storeOperation(for: packet) else { return }
            enqueue(StoreWork(op: op, replyTo: address, nonce: nonce), sessionId: sessionId)
        }
    }

    /// Makes sure the store has the session's row, for first packets that
    /// need nothing else from the store.
    private func ensurePersisted(_ id: String) {
        guard let session = table[id], !session.persisted, !session.busy, session.queue.isEmpty else { return }
        enqueue(StoreWork(op: .ensure(IPCEnsure()), replyTo: nil), sessionId: id)
    }

    private func enqueue(_ work: StoreWork, sessionId: String) {
        guard let session = table[sessionId] else { return }
        guard session.queue.count < Self.maxQueuedPerSession else {
            if let replyTo = work.replyTo {
                reply(.error(message: ProtocolText.packetFailurePrefix + "too many requests in progress"), session: session, to: replyTo)
            }
            return
        }
        table.update(sessionId) { $0.queue.append(work) }
        pump(sessionId)
    }

    /// Sends the session's next store request if none is in flight.
    private func pump(_ id: String) {
        guard let session = table[id], !session.busy, let work = session.queue.first else { return }
        table.update(id) { session in
            session.queue.removeFirst()
            session.busy = true
        }
        var request = IPCStoreRequest()
        request.session.sessionID = id
        let carriesKey = !session.persisted
        if carriesKey {
            request.session.wrappedKey = Data(session.wrappedKey)
            request.session.keyDigest = Data(session.keyDigest)
        }
        if carriesKey || Translation.isWrite(work.op) { request.session.replayMark = session.replay.highest }
        request.op = work.op
        let cipher = session.cipher
        store.call(request) { [self] result in
            loop.execute { [self] in storeAnswered(id, cipher: cipher, work: work, carriedKey: carriesKey, result) }
        }
    }

    private func storeAnswered(
        _ id: String, cipher: SessionCipher, work: StoreWork, carriedKey: Bool, _ result: Result<IPCStoreResponse, RPCError>
    ) {
        table.update(id) { session in
            session.busy = false
            if case .success(let response) = result {
                if carriedKey { session.persisted = true }
                session.userId = response.sessionUserID.isEmpty ? nil : response.sessionUserID
            }
        }
        if let replyTo = work.replyTo {
            switch result {
            case .success(let response):
                if let packet = Translation.reply(to: response, sessionId: id) {
                    reply(packet, sessionId: id, cipher: cipher, answering: work.nonce, to: replyTo)
                }
            case .failure(let error):
                logger.warning("store request failed: \(error)", metadata: ["session": "\(id)"])
                let reason = error.code == .timeout ? "the store did not answer in time" : "the store is unavailable"
                reply(
                    .error(message: ProtocolText.packetFailurePrefix + reason), sessionId: id, cipher: cipher, answering: work.nonce,
                    to: replyTo)
            }
        }
        pump(id)
    }

    // MARK: - Broadcasts (PROTOCOL.md §6)

    /// An event published by the store; called on the ZeroMQ thread.
    func eventArrived(_ body: [UInt8]) {
        loop.execute { [self] in
            do {
                deliver(try IPCEvent(serializedBytes: body))
            } catch {
                logger.warning("undecodable event dropped: \(error)")
            }
        }
    }

    private func deliver(_ event: IPCEvent) {
        let now = MonotonicClock.now()
        switch event.kind {
        case .room(let room):
            if let last = roomSequence[room.roomID], room.seq != last &+ 1, room.seq > last {
                logger.warning("events of room \(room.roomID) skipped from \(last + 1) to \(room.seq - 1)")
            }
            roomSequence[room.roomID] = max(room.seq, roomSequence[room.roomID] ?? 0)
            let packet: ServerPacket
            switch room.body {
            case .message(let message)?: packet = .message(MessageEvent(message))
            case .memberJoined(let joined)?: packet = .memberJoined(roomId: room.roomID, member: MemberItem(joined.member))
            case .memberLeft(let left)?: packet = .memberLeft(roomId: room.roomID, memberId: left.memberID)
            case nil: return
            }
            // A room's events reach each session in commit order (one stream per room).
            let template = BroadcastTemplate(packet)
            for user in room.recipientUserIds {
                for id in table.sessions(ofUser: user) { broadcast(template, to: id, stream: room.roomID, now: now) }
            }
        case .user(let user):
            let packet: ServerPacket
            switch user.body {
            case .roomJoined(let room)?: packet = .roomJoined(roomId: room.roomID, roomName: room.name)
            case .roomLeft(let room)?: packet = .roomLeft(roomId: room.roomID, roomName: room.name)
            case nil: return
            }
            let template = BroadcastTemplate(packet)
            for id in table.sessions(ofUser: user.userID) where id != user.exceptSessionID {
                broadcast(template, to: id, now: now)
            }
        case .roomList(let list):
            // Cut to what fits in a datagram with the copy's msg_id added.
            let full = ServerPacket.roomList(list.rooms.map(RoomSummary.init))
            let template = BroadcastTemplate(full.trimmed { Self.fitsInDatagram($0.count + Self.msgIdOverhead) } ?? full)
            for id in Array(table.sessions.keys) { broadcast(template, to: id, now: now) }
        case .sessionNotice(let notice):
            // A late error (an AI job that failed): sent like a broadcast, so
            // it is retransmitted until acknowledged.
            broadcast(BroadcastTemplate(.error(message: notice.error)), to: notice.sessionID, now: now)
        case .mark?, nil:
            return
        }
    }

    /// Queues one copy with its own `msg_id` for reliable delivery. Only
    /// sessions that proved themselves on this edge and spoke recently
    /// receive broadcasts.
    private func broadcast(_ template: BroadcastTemplate, to id: String, stream: String? = nil, now: UInt64) {
        guard let session = table[id], session.state == .active,
            now &- session.lastSeen <= settings.broadcastIdle.nanoseconds
        else { return }
        let msgId = SecureRandom.identifier()
        let json = template.copy(msgId: msgId)
        guard Self.fitsInDatagram(json.count) else {
            logger.warning(
                "\(template.packet.typeName) broadcast does not fit in one datagram; not sent", metadata: ["session": "\(id)"])
            return
        }
        perform(delivery.submit(session: id, msgId: msgId, stream: stream, payload: json, now: now))
    }

    /// Carries out what the delivery queue decided. Every transmission goes
    /// to the session's current address, so a client that moved still gets
    /// its retries, under a fresh nonce.
    private func perform(_ actions: [DeliveryQueue<[UInt8]>.Action]) {
        for action in actions {
            switch action {
            case .send(let copy):
                guard let session = table[copy.session] else { continue }
                if copy.transmissions > 1 { metrics.retransmissions.increment() }
                seal(copy.payload, sessionId: session.id, cipher: session.cipher, to: session.address)
            case .acknowledged(let roundTrip):
                metrics.ackRoundTrip.recordNanoseconds(Int64(roundTrip))
            case .unreachable(let session, let dropped):
                metrics.unreachable.increment()
                logger.info(
                    "session unreachable: broadcasts stop until it speaks",
                    metadata: ["session": "\(session)", "dropped": "\(dropped)"])
            }
        }
    }

    // MARK: - Housekeeping

    private func tick() {
        let now = MonotonicClock.now()
        perform(delivery.due(now: now))
        metrics.unacknowledged.record(delivery.count)
        metrics.sessions.record(table.count)
        if now &- lastSweep >= Self.sweepInterval {
            lastSweep = now
            let cutoff = now &- settings.sessionIdle.nanoseconds
            for id in table.idle(since: cutoff) where table[id]?.busy == false {
                table.remove(id)
                delivery.remove(session: id)
            }
        }
        if now &- lastTouch >= Self.touchInterval {
            lastTouch = now
            if let request = touchRequest() {
                let ids = request.touchSessions.sessions.map(\.sessionID)
                store.call(request) { [self] result in
                    guard case .failure = result else { return }
                    loop.execute { [self] in
                        for id in ids { table.update(id) { $0.dirty = true } }
                    }
                }
            }
        }
    }

    /// Liveness and replay marks of the sessions active since the last report.
    private func touchRequest() -> IPCStoreRequest? {
        let dirty = table.takeDirty()
        guard !dirty.isEmpty else { return nil }
        var touch = IPCTouchSessions()
        touch.sessions = dirty.map { session in
            var activity = IPCSessionActivity()
            activity.sessionID = session.id
            activity.lastActiveAt = session.lastSeenWall
            activity.replayMark = session.replay.highest
            return activity
        }
        var request = IPCStoreRequest()
        request.touchSessions = touch
        return request
    }

    // MARK: - Output

    private func reply(_ packet: ServerPacket, session: EdgeSession, answering nonce: [UInt8]? = nil, to address: SocketAddress) {
        reply(packet, sessionId: session.id, cipher: session.cipher, answering: nonce, to: address)
    }

    /// A direct response, remembered by its request's nonce for a client that
    /// asks again. One that does not fit in a datagram becomes an ERROR.
    private func reply(
        _ packet: ServerPacket, sessionId: String, cipher: SessionCipher, answering nonce: [UInt8]? = nil, to address: SocketAddress
    ) {
        // Lists that grew past one datagram are cut to what fits.
        let packet = packet.trimmed { Self.fitsInDatagram($0.count) } ?? packet
        var datagram = seal(packet.json().serialized(), sessionId: sessionId, cipher: cipher, to: address)
        if datagram == nil {
            logger.warning("\(packet.typeName) reply does not fit in one datagram", metadata: ["session": "\(sessionId)"])
            let error = ServerPacket.error(message: ProtocolText.packetFailurePrefix + "the reply does not fit in one datagram")
            datagram = seal(error.json().serialized(), sessionId: sessionId, cipher: cipher, to: address)
        }
        if let nonce, let datagram { table.update(sessionId) { $0.replies.replied(nonce, with: datagram) } }
    }

    /// Whether inner JSON of `count` bytes fits in one datagram once sealed:
    /// the envelope's fixed fields plus the ciphertext and tag as hex.
    static func fitsInDatagram(_ count: Int) -> Bool {
        secureEnvelopeOverhead + 2 * (count + WireSpec.tagBytes) <= WireSpec.maxDatagram
    }

    private static let secureEnvelopeOverhead = Envelope.secure(
        SecureEnvelope(
            sessionId: String(repeating: "0", count: 2 * WireSpec.idBytes), nonce: String(repeating: "0", count: 2 * WireSpec.nonceBytes),
            ciphertext: "")
    ).encoded().count

    /// Encrypts an inner packet under a fresh server nonce and sends it;
    /// returns the datagram, or nil when it would be too large for UDP.
    @discardableResult
    private func seal(_ json: [UInt8], sessionId: String, cipher: SessionCipher, to address: SocketAddress) -> [UInt8]? {
        guard Self.fitsInDatagram(json.count) else { return nil }
        let nonce = Nonce.server()
        let sealed = cipher.seal(json, nonce: nonce)
        let datagram = Envelope.secure(
            SecureEnvelope(sessionId: sessionId, nonce: Hex.encode(nonce), ciphertext: Hex.encode(sealed))
        ).encoded()
        write(datagram, to: address)
        return datagram
    }

    /// A plaintext `SERVER_ERROR` for a datagram that proved nothing about
    /// its sender. Its source address may be forged, so the reply is kept
    /// within the source's budget of error replies and within three times the
    /// size of the datagram it answers (a reply that cannot be shortened to
    /// fit is not sent): the server never amplifies a spoofed packet.
    private func sendError(_ message: String, answering request: Request) {
        guard isExempt(request.address) || unauthenticatedLimiter.allow(Self.source(request.address), now: MonotonicClock.now()),
            let datagram = Self.errorDatagram(message, budget: Self.amplificationFactor * request.size)
        else {
            metrics.errorRepliesSuppressed.increment()
            return
        }
        write(datagram, to: request.address)
    }

    /// A `SERVER_ERROR` of at most `budget` bytes: the message itself, or the
    /// protocol's text with its detail cut short; nil when not even that fits.
    static func errorDatagram(_ message: String, budget: Int) -> [UInt8]? {
        let datagram = Envelope.serverError(message: message).encoded()
        if datagram.count <= budget { return datagram }
        guard message.hasPrefix(ProtocolText.packetFailurePrefix) else { return nil }
        var detail = message.dropFirst(ProtocolText.packetFailurePrefix.count)
        while !detail.isEmpty {
            detail = detail.dropLast(max(1, (datagram.count - budget) / 2))
            let shorter = Envelope.serverError(message: ProtocolText.packetFailurePrefix + detail + "…").encoded()
            if shorter.count <= budget { return shorter }
        }
        let bare = Envelope.serverError(message: ProtocolText.packetFailurePrefix.trimmingCharacters(in: .whitespaces)).encoded()
        return bare.count <= budget ? bare : nil
    }

    /// What a copy's `"msg_id"` adds to a broadcast's JSON.
    static let msgIdOverhead = #","msg_id":""#.utf8.count + 2 * WireSpec.idBytes

    /// Replies to unauthenticated datagrams are at most this many times their size.
    static let amplificationFactor = 3

    /// The part of an address a budget is kept for: the IP, not the port.
    static func source(_ address: SocketAddress) -> String { address.ipAddress ?? "\(address)" }

    private func isExempt(_ address: SocketAddress) -> Bool { settings.exemptSources.contains(Self.source(address)) }

    private func write(_ datagram: [UInt8], to address: SocketAddress) {
        guard let channel else { return }
        metrics.datagramsOut.increment()
        let envelope = AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: datagram))
        channel.writeAndFlush(envelope, promise: nil)
    }

    private static func wallClock() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// Session ids are 32 lowercase hex characters (PROTOCOL.md §1.3);
    /// anything else cannot be in the store, so it is not looked up.
    private static func isIdentifier(_ text: String) -> Bool {
        text.utf8.count == 2 * WireSpec.idBytes && Hex.decode(text) != nil
    }
}
