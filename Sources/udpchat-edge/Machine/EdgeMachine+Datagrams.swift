import ChatLog
import ChatWire
import Crypto
import Foundation
import IPCMessages

extension EdgeMachine {
    /// One datagram from `address`.
    mutating func receive(_ bytes: [UInt8], from address: PeerAddress, _ now: EdgeTime, _ out: inout EdgeOutput) {
        metrics.datagramsIn.increment()
        let request = Request(address: address, size: bytes.count)
        guard bytes.count <= settings.bufferSize else {
            sendError(ProtocolText.packetFailurePrefix + "datagram larger than \(settings.bufferSize) bytes", answering: request, now, &out)
            return
        }
        // Most datagrams are plain SECURE_MSG envelopes: read without the full parser.
        if let secure = SecureDatagram(fastFrom: bytes) {
            secureDatagram(secure, answering: request, now, &out)
            return
        }
        // The rest (handshakes, mostly) waits until the datagrams read with
        // it are answered, so sessions are served first under a flood of
        // handshakes; beyond the queue's bound it is dropped unanswered.
        guard queued.count < Self.maxQueuedDatagrams, queuedBytes + bytes.count <= Self.maxQueuedBytes else {
            metrics.datagramsShed.increment()
            return
        }
        queued.append((bytes, request))
        queuedBytes += bytes.count
    }

    /// Does up to `budget` items of the work queued behind the sessions'
    /// datagrams: udpchat-keys' answers to handshakes first (each completes
    /// a handshake already paid for), then the datagrams
    /// ``receive(_:from:_:_:)`` queued, oldest first. Whether any remain.
    /// The handshakes among the datagrams go to udpchat-keys through the
    /// rim's ``HandshakeWindow``.
    mutating func readQueued(budget: Int, _ now: EdgeTime, _ out: inout EdgeOutput) -> Bool {
        var budget = budget
        while budget > 0, let (request, result) = queuedAnswers.popFirst() {
            sessionMade(result, answering: request, now, &out)
            budget -= 1
        }
        while budget > 0, let (bytes, request) = queued.popFirst() {
            queuedBytes -= bytes.count
            parse(bytes, answering: request, now, &out)
            budget -= 1
        }
        return !queued.isEmpty || !queuedAnswers.isEmpty
    }

    private mutating func parse(_ bytes: [UInt8], answering request: Request, _ now: EdgeTime, _ out: inout EdgeOutput) {
        let envelope: Envelope
        do {
            envelope = try Envelope.decodeRequest(bytes)
        } catch {
            sendError(error.replyText, answering: request, now, &out)
            return
        }
        switch envelope {
        case .secure(let secure): secureDatagram(SecureDatagram(secure), answering: request, now, &out)
        case _ where draining: return  // only a known session's packet can be an ACK; the rest goes to the next edge
        case .sessionInitRequest(let clientKey): handshake(clientKey: clientKey, answering: request, now, &out)
        case .sessionInitReply, .serverError: sendError(ProtocolText.invalidMessageFormat, answering: request, now, &out)
        }
    }

    private mutating func secureDatagram(_ secure: SecureDatagram, answering request: Request, _ now: EdgeTime, _ out: inout EdgeOutput) {
        if draining {
            if let index = table.index(of: secure.sessionId) { open(secure, session: index, answering: request, now, &out) }
            return
        }
        secureMessage(secure, answering: request, now, &out)
    }

    // MARK: - Handshake (docs/protocol.md §2)

    private mutating func handshake(clientKey: String, answering request: Request, _ now: EdgeTime, _ out: inout EdgeOutput) {
        let address = request.address
        // Cheap checks before any RSA work: the source's budget, then the global cap.
        guard isExempt(address) || handshakeLimiter.allow(address.source, now: now.monotonic) else {
            metrics.handshakesDropped.increment()
            logger.debug("handshake over its source's budget dropped", metadata: .fields(.address(address.source)))
            return
        }
        guard handshakesInFlight < Self.maxHandshakesInFlight else {
            sendError(ProtocolText.packetFailurePrefix + "too many handshakes in progress; try again", answering: request, now, &out)
            return
        }
        // Capacity: new sessions are refused first, before anything an
        // established session holds is touched (docs/security.md).
        if let refusal = capacityRefusal(for: address, now) {
            metrics.handshakesRefused.increment()
            sendError(ProtocolText.packetFailurePrefix + refusal, answering: request, now, &out)
            return
        }
        // Only the Base64 is read here; udpchat-keys parses the key, draws
        // the session key, encrypts it to the client and signs it.
        let der: [UInt8]
        do {
            der = try HandshakeCrypto.clientKeyDER(fromBase64: clientKey)
        } catch {
            sendError(ProtocolText.packetFailurePrefix + error.description, answering: request, now, &out)
            return
        }
        handshakesInFlight += 1
        out.keysCalls.append((.newSession(clientKey: der), .newSession(request: request)))
    }

    /// Why a new session from `address` cannot be had now, or nil: too many
    /// sessions from its source, too many in all or not logged in, or the
    /// edge over its memory limit. Each is logged at most once a minute.
    private mutating func capacityRefusal(for address: PeerAddress, _ now: EdgeTime) -> String? {
        let refusal: (reason: String, text: String)
        if !isExempt(address), table.sessions(from: address.source) >= settings.sessionsPerSource {
            refusal = ("sessions per source", "too many sessions from your address (\(settings.sessionsPerSource)); close some, or wait for them to expire")
        } else if table.count >= settings.maxSessions {
            refusal = ("sessions", "the server has as many sessions as it takes (\(settings.maxSessions)); try again later")
        } else if table.anonymousCount >= settings.maxAnonymousSessions {
            refusal = ("sessions not logged in", "the server has as many sessions as it takes; try again later")
        } else if let limit = settings.memoryLimitBytes, memoryInUse > limit {
            refusal = ("memory", "the server is at its memory limit; try again later")
        } else {
            return nil
        }
        if now.monotonic &- lastCapacityLog >= 60_000_000_000 || lastCapacityLog == 0 {
            lastCapacityLog = now.monotonic
            logger.warning(
                "new sessions refused: at a limit",
                metadata: .fields(
                    .reason(refusal.reason), .value("sessions", "\(table.count)"), .value("anonymous", "\(table.anonymousCount)"),
                    .value("memory_bytes", "\(memoryInUse)"), .address(address.source)))
        }
        return refusal.text
    }

    /// udpchat-keys made a handshake's session (or refused the client's key).
    private mutating func sessionMade(
        _ result: Result<IPCKeysResponse, RPCError>, answering request: Request, _ now: EdgeTime, _ out: inout EdgeOutput
    ) {
        handshakesInFlight -= 1
        let made: IPCNewSessionKeys
        let cipher: SessionCipher
        switch result {
        case .success(let response):
            if case .failure(let failure)? = response.result, failure.error.code == .invalidClientKey {
                sendError(ProtocolText.packetFailurePrefix + failure.message, answering: request, now, &out)
                return
            }
            if case .failure(let failure)? = response.result, failure.error.code == .busy {
                metrics.handshakesFailed.increment()
                sendError(ProtocolText.packetFailurePrefix + "the server is busy; try again", answering: request, now, &out)
                return
            }
            guard case .newSession(let value)? = response.result, let key = SessionCipher(keyBytes: [UInt8](value.sessionKey)),
                Self.isIdentifier(value.sessionID)
            else {
                metrics.handshakesFailed.increment()
                logger.error("udpchat-keys refused a handshake", metadata: .fields(.reason(response.failure.message)))
                sendError(ProtocolText.packetFailurePrefix + "the key service refused the handshake", answering: request, now, &out)
                return
            }
            made = value
            cipher = key
        case .failure(let error):
            metrics.handshakesFailed.increment()
            logger.warning("handshake failed", metadata: .fields(.peer("udpchat-keys"), .error(error)))
            sendError(ProtocolText.packetFailurePrefix + "the key service is unavailable; try again", answering: request, now, &out)
            return
        }
        let sessionId = made.sessionID
        metrics.handshakesOK.increment()
        let (index, forgotten) = table.addPending(
            EdgeSession(
                id: sessionId, cipher: cipher, wrappedKey: [UInt8](made.wrappedKey),
                keyDigest: [UInt8](SHA256.hash(data: cipher.keyBytes)), persisted: false, state: .handshake,
                address: request.address, lastSeen: now.monotonic, lastSeenWall: now.wall, replay: SessionReplay(), userId: nil),
            source: request.address.source)
        for index in forgotten { delivery.removeSession(index) }
        // It receives nothing until a packet of its own verifies.
        delivery.addSession(
            index, salt: MessageIdentifier.salt(sessionId: sessionId), source: request.address.source, userId: nil, acknowledges: false, active: false, follows: [], now: now.monotonic)
        let reply = SessionInitReply(
            sessionId: sessionId, encryptedKey: Hex.encode([UInt8](made.encryptedKey)), serverPublicKey: Hex.encode([UInt8](made.publicKeyDer)),
            signature: Hex.encode([UInt8](made.signature)), fingerprint: made.fingerprint)
        write(Envelope.sessionInitReply(reply).encoded(), to: request.address, &out)
    }

    // MARK: - Secure messages (docs/protocol.md §3)

    private mutating func secureMessage(_ secure: SecureDatagram, answering request: Request, _ now: EdgeTime, _ out: inout EdgeOutput) {
        if let index = table.index(of: secure.sessionId) {
            open(secure, session: index, answering: request, now, &out)
            return
        }
        // Not in memory: the session may be in the store (the edge restarted
        // and it was not active lately, or another edge made it). Datagrams
        // wait while it is restored.
        if restoring[secure.sessionId] != nil {
            if restoring[secure.sessionId]!.count < Self.maxHeldPerSession { restoring[secure.sessionId]!.append((secure, request)) }
            return
        }
        guard Self.isIdentifier(secure.sessionId) else {
            sendError(ProtocolText.sessionNotFound(ProtocolText.echo(secure.sessionId)), answering: request, now, &out)
            return
        }
        // A lookup in the store is unauthenticated work: it counts against the source's budget.
        guard isExempt(request.address) || unauthenticatedLimiter.allow(request.address.source, now: now.monotonic) else {
            return
        }
        guard restoring.count < Self.maxRestoring else {
            sendError(ProtocolText.packetFailurePrefix + "too many sessions being restored; try again", answering: request, now, &out)
            return
        }
        restoring[secure.sessionId] = [(secure, request)]
        out.storeCalls.append((.loadSession(id: secure.sessionId), .restore(sessionId: secure.sessionId)))
    }

    /// Datagrams held for a session that is now restored (or could not be).
    mutating func releaseHeld(_ id: String, restored index: SessionTable.Index?, failure: String, _ now: EdgeTime, _ out: inout EdgeOutput) {
        let held = restoring.removeValue(forKey: id) ?? []
        for (secure, request) in held {
            if let index {
                open(secure, session: index, answering: request, now, &out)
            } else {
                sendError(failure, answering: request, now, &out)
            }
        }
    }

    /// docs/protocol.md §3.4, reordered so that nothing about the session changes
    /// before the AES-GCM tag verifies (§12 item 4): decode, reject reflected
    /// server nonces, open, check replay, and only then take the address and
    /// liveness.
    mutating func open(
        _ secure: SecureDatagram, session index: SessionTable.Index, answering request: Request, _ now: EdgeTime,
        _ out: inout EdgeOutput
    ) {
        let address = request.address
        guard let cipher = table[index]?.cipher else { return }
        guard let nonce = secure.nonce, nonce.count == WireSpec.nonceBytes else {
            sendError(ProtocolText.decryptionFailed, answering: request, now, &out)
            return
        }
        if Nonce.isServerNonce(nonce) {
            // One of our own packets sent back (§12 item 5): no reply at all.
            metrics.reflectionsDropped.increment()
            logger.debug("reflected server packet dropped", metadata: .fields(.session(secure.sessionId)))
            return
        }
        guard let sealed = secure.sealed, let plaintext = cipher.open(sealed, nonce: nonce) else {
            metrics.decryptFailures.increment()
            if !draining { sendError(ProtocolText.decryptionFailed, answering: request, now, &out) }
            return
        }
        let packet: ClientPacket
        var decodeError: String?
        if let msgId = plaintext.withUnsafeBytes({ raw in
            HotPaths.acknowledgement(raw).map { String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0]), as: UTF8.self) }
        }) {
            packet = .ack(msgId: msgId)  // the commonest packet, read without the full parser
        } else {
            do {
                packet = try ClientPacket.decode(plaintext)
            } catch {
                guard !draining else { return }
                packet = .hello
                decodeError = error.errorText ?? ""
            }
        }
        if draining {
            // Left for the next edge: not marked seen, so it is not a replay there.
            guard case .ack = packet else { return }
        }
        if case .ack = packet {
            // A late or repeated ACK confirms nothing new and has no reply.
            guard table.update(index, { $0.replay.acknowledgements.admit(nonce) }) == .accepted else { return }
        } else {
            var verdict = table.update(index) { $0.replay.requests.admit(nonce) }
            // One of the session's last requests, sent again after the window
            // moved past it: still a repeat, not a replay.
            if verdict == .tooOld, table[index]!.replies.remembers(nonce) { verdict = .duplicate }
            guard verdict == .accepted else {
                // The same datagram again from the session's own address: the
                // network duplicated it, or a client whose reply was lost
                // retries. It gets the same reply if there was one, else
                // nothing, and the request is not carried out twice. Anything
                // else is a replay.
                guard verdict == .duplicate, address == table[index]!.address else {
                    metrics.replaysRejected.increment()
                    sendError(ProtocolText.nonceReused, answering: request, now, &out)
                    return
                }
                switch table.update(index, { $0.replies.repeatFor(nonce) }) {
                case .reply(let datagram)?: write(datagram, to: address, &out)
                case .retry(let work)?: enqueue(work, session: index, &out)
                default: break
                }
                return
            }
        }
        table.update(index) { session in
            session.address = address
            session.lastSeen = now.monotonic
            session.lastSeenWall = now.wall
            session.dirty = true
            session.movedAway = false
            session.state = .active
        }
        var actions: [DeliveryEngine.Output] = []
        delivery.heard(index, now: now.monotonic, &actions)
        perform(actions, now, &out)
        if let decodeError {
            if decodeError.isEmpty {
                logger.debug("inner packet carrying msg_id dropped", metadata: .fields(.session(secure.sessionId)))
            } else {
                reply(.error(message: decodeError), session: index, answering: nonce, to: address, &out)
            }
            return
        }
        // Requests (not ACKs, which are many and have no reply) are remembered
        // for a client that sends one again.
        if case .ack = packet {} else { table.update(index) { $0.replies.accepted(nonce) } }
        dispatch(packet, session: index, nonce: nonce, from: address, now, &out)
    }

    // MARK: - Inner packets (docs/protocol.md §5)

    private mutating func dispatch(
        _ packet: ClientPacket, session index: SessionTable.Index, nonce: [UInt8], from address: PeerAddress, _ now: EdgeTime,
        _ out: inout EdgeOutput
    ) {
        switch packet {
        case .ack(let msgId):
            if let msgId, let id = MessageIdentifier(hex: msgId) {
                var actions: [DeliveryEngine.Output] = []
                delivery.acknowledge(index, id, now: now.monotonic, &actions)
                perform(actions, now, &out)
            }
            ensurePersisted(index, &out)
        case .hello:
            reply(.hello(message: ProtocolText.helloMessage), session: index, answering: nonce, to: address, &out)
            ensurePersisted(index, &out)
        case .login where !isExempt(address) && !loginLimiter.allow(address.source, now: now.monotonic):
            reply(
                .error(message: "Too many login attempts from your address; try again in a minute."), session: index,
                answering: nonce, to: address, &out)
        case .message where !messageAllowed(index, now):
            reply(.error(message: ProtocolText.tooManyMessages), session: index, answering: nonce, to: address, &out)
        default:
            guard let op = Translation.storeOperation(for: packet) else { return }
            enqueue(StoreWork(op: op, replyTo: address, nonce: nonce), session: index, &out)
        }
    }

    /// The per-user message rate (`MESSAGES_PER_USER`): a sender never
    /// outruns what the rooms can deliver by more than its burst.
    private mutating func messageAllowed(_ index: SessionTable.Index, _ now: EdgeTime) -> Bool {
        guard let user = table[index]?.userId else { return true }  // the store answers "Authentication required."
        return messageLimiter.allow(user, now: now.monotonic)
    }
}
