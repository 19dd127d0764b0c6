import ChatLog
import ChatWire
import Foundation
import IPCMessages

extension EdgeMachine {
    /// Makes sure the store has the session's row, for first packets that
    /// need nothing else from the store.
    mutating func ensurePersisted(_ index: SessionTable.Index, _ out: inout EdgeOutput) {
        guard let session = table[index], !session.persisted, !session.busy, session.queue.isEmpty else { return }
        enqueue(StoreWork(op: .ensure(IPCEnsure()), replyTo: nil), session: index, &out)
    }

    mutating func enqueue(_ work: StoreWork, session index: SessionTable.Index, _ out: inout EdgeOutput) {
        guard let queued = table[index]?.queue.count else { return }
        guard queued < Self.maxQueuedPerSession else {
            if let replyTo = work.replyTo {
                reply(.error(message: ProtocolText.packetFailurePrefix + "too many requests in progress"), session: index, to: replyTo, &out)
            }
            return
        }
        table.update(index) { $0.queue.append(work) }
        pump(index, &out)
    }

    /// Sends the session's next store request if none is in flight.
    private mutating func pump(_ index: SessionTable.Index, _ out: inout EdgeOutput) {
        guard let session = table[index], !session.busy, !session.queue.isEmpty else { return }
        let work = table.update(index) { session -> StoreWork in
            session.busy = true
            return session.queue.removeFirst()
        }!
        var request = IPCStoreRequest()
        request.session.sessionID = session.id
        let carriesKey = !session.persisted
        if carriesKey {
            request.session.wrappedKey = Data(session.wrappedKey)
            request.session.keyDigest = Data(session.keyDigest)
        }
        if carriesKey || Translation.isWrite(work.op) {
            request.session.replayMark = session.replay.highest
            if session.state == .active { request.session.address = session.address.description }
        }
        if Translation.isWrite(work.op) {
            // Carried out once per nonce, and not at all once this edge has stopped waiting.
            if let nonce = work.nonce { request.session.requestNonce = Data(nonce) }
            let wallNow = Int64(Date().timeIntervalSince1970 * 1000)
            // The last question (every attempt unanswered) is already past
            // its deadline: the store answers whether an attempt was carried
            // out, and carries none out now.
            request.session.deadlineUnixMs =
                work.unanswered >= Self.writeAttempts ? wallNow : wallNow + Int64(settings.common.rpcTimeout.nanoseconds / 1_000_000)
        }
        request.op = work.op
        out.storeCalls.append((request, .request(session: index, sessionId: session.id, work: work, carriedKey: carriesKey)))
    }

    /// udpchat-store answered a client's request.
    mutating func requestAnswered(
        session index: SessionTable.Index, sessionId: String, work: StoreWork, carriedKey: Bool,
        _ result: Result<IPCStoreResponse, RPCError>, _ now: EdgeTime, _ out: inout EdgeOutput
    ) {
        // The session may have expired meanwhile, and its index gone to another.
        guard table[index]?.id == sessionId else { return }
        table.update(index) { session in
            session.busy = false
            if case .success = result, carriedKey {
                session.persisted = true
                session.wrappedKey = []
                session.keyDigest = []
            }
        }
        // An error the store gave before the operation could run (a storage
        // failure, a login held back by its throttle) says nothing of the
        // session's user: it stays who it was.
        if case .success(let response) = result, !response.userUnknown {
            let userId = response.sessionUserID.isEmpty ? nil : response.sessionUserID
            table.update(index) { $0.userId = userId }
            delivery.setUser(index, userId)
            if response.hasFollows {
                var actions: [DeliveryEngine.Output] = []
                delivery.replaceFollows(index, with: response.follows.cursors.map { ($0.roomID, $0.seq) }, now: now.monotonic, &actions)
                perform(actions, now, &out)
            }
        }
        if let replyTo = work.replyTo {
            switch result {
            case .success(let response):
                if let packet = Translation.reply(to: response, sessionId: sessionId) {
                    // A read changes nothing, so its repeat is read again
                    // rather than its reply (a history may fill a datagram)
                    // kept: what a session pins in memory stays small.
                    let keep = Translation.isWrite(work.op) ? work.nonce : nil
                    reply(packet, session: index, answering: keep, to: replyTo, &out)
                    if keep == nil, let nonce = work.nonce { table.update(index) { $0.replies.sendAgainWhenRepeated(nonce, work) } }
                }
            case .failure(let error) where work.nonce != nil && Translation.isWrite(work.op) && work.unanswered < Self.writeAttempts:
                // Asked again, with the same nonce: the store carries a write
                // out once, so the answer says whether it was (a store that
                // committed and then died answers from its database once back).
                // After the last attempt, once more past its deadline: an
                // attempt the store began before it may still have been
                // committed, and the client is told only what happened.
                logger.info("store request failed; asking again", metadata: .fields(.session(sessionId), .error(error)))
                var again = work
                again.unanswered += 1
                table.update(index) { $0.queue.insert(again, at: 0) }
            case .failure(let error):
                logger.warning("store request failed", metadata: .fields(.session(sessionId), .error(error)))
                let reason = error.code == .timeout ? "the store did not answer in time" : "the store is unavailable"
                // The answer stands: a repeat that crossed it on the way (a
                // client retransmits while it waits) gets it again, and
                // does not make the store carry out what the client was
                // told failed.
                reply(.error(message: ProtocolText.packetFailurePrefix + reason), session: index, answering: work.nonce, to: replyTo, &out)
            }
        }
        pump(index, &out)
    }

    /// A direct response, remembered by its request's nonce for a client that
    /// asks again. One that does not fit in a datagram becomes an ERROR.
    mutating func reply(
        _ packet: ServerPacket, session index: SessionTable.Index, answering nonce: [UInt8]? = nil, to address: PeerAddress,
        _ out: inout EdgeOutput
    ) {
        guard let id = table[index]?.id, let cipher = table[index]?.cipher else { return }
        // Lists that grew past one datagram are cut to what fits.
        let packet = packet.trimmed { WireSpec.fitsSealed($0.count) } ?? packet
        var datagram = Self.seal(packet.json().serialized(), sessionId: id, cipher: cipher, nonces: &nonces)
        if datagram == nil {
            logger.warning("reply does not fit in one datagram", metadata: .fields(.session(id), .value("type", packet.typeName)))
            let error = ServerPacket.error(message: ProtocolText.packetFailurePrefix + "the reply does not fit in one datagram")
            datagram = Self.seal(error.json().serialized(), sessionId: id, cipher: cipher, nonces: &nonces)
        }
        guard let datagram else { return }
        write(datagram, to: address, &out)
        if let nonce { table.update(index) { $0.replies.replied(nonce, with: datagram) } }
    }
}
