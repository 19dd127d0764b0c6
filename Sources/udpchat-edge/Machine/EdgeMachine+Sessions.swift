import ChatLog
import ChatWire
import Crypto
import Foundation
import IPCMessages

extension EdgeMachine {
    // MARK: - Answers

    /// udpchat-keys answered. A handshake's answer waits with the queued
    /// datagrams (``readQueued(budget:_:_:)``): completing a handshake is
    /// work for after the sessions' datagrams too.
    mutating func keysAnswered(_ call: KeysCall, _ result: Result<IPCKeysResponse, RPCError>, _ now: EdgeTime, _ out: inout EdgeOutput) {
        switch call {
        case .newSession(let request):
            queuedAnswers.append((request, result))
        case .unwrap(let sessionId, let loaded):
            sessionUnwrapped(sessionId, loaded, result, now, &out)
        case .unwrapPage(let page, let resync, let more, let last):
            pageUnwrapped(page, resync: resync, more: more, last: last, result, now, &out)
        }
    }

    /// udpchat-store answered.
    mutating func storeAnswered(
        _ call: StoreCall, _ result: Result<IPCStoreResponse, RPCError>, _ now: EdgeTime, _ out: inout EdgeOutput
    ) {
        switch call {
        case .restore(let sessionId):
            sessionLoaded(sessionId, result, now, &out)
        case .request(let index, let sessionId, let work, let carriedKey):
            requestAnswered(session: index, sessionId: sessionId, work: work, carriedKey: carriedKey, result, now, &out)
        case .report(let reports):
            reportsInFlight -= 1
            guard case .failure(let error) = result else { return }
            logger.warning("reporting sessions failed; they are reported again", metadata: .fields(.peer("udpchat-store"), .error(error)))
            for report in reports where table[report.session]?.id == report.sessionId {
                table.update(report.session) { $0.dirty = true }
                delivery.reportFailed(report.session, cursors: report.cursors)
            }
        case .loadPage(_, let resync):
            pageLoaded(resync: resync, result, now, &out)
        case .read(let roomId, let after):
            roomEventsRead(roomId: roomId, after: after, result, now, &out)
        }
    }

    // MARK: - A session a datagram named (the edge restarted, or another edge made it)

    private mutating func sessionLoaded(_ id: String, _ result: Result<IPCStoreResponse, RPCError>, _ now: EdgeTime, _ out: inout EdgeOutput) {
        switch result {
        case .success(let response):
            guard case .loadedSession(let loaded)? = response.result, loaded.found else {
                releaseHeld(id, restored: nil, failure: ProtocolText.sessionNotFound(id), now, &out)
                return
            }
            out.keysCalls.append((.unwrap(sessionId: id, wrappedKey: loaded.wrappedKey), .unwrap(sessionId: id, loaded: loaded)))
        case .failure(let error):
            logger.warning("restoring a session failed", metadata: .fields(.session(id), .peer("udpchat-store"), .error(error)))
            releaseHeld(id, restored: nil, failure: ProtocolText.packetFailurePrefix + "the store is unavailable; try again", now, &out)
        }
    }

    private mutating func sessionUnwrapped(
        _ id: String, _ loaded: IPCLoadedSession, _ result: Result<IPCKeysResponse, RPCError>, _ now: EdgeTime,
        _ out: inout EdgeOutput
    ) {
        guard case .success(let response) = result, case .unwrapped(let unwrapped)? = response.result,
            let cipher = SessionCipher(keyBytes: [UInt8](unwrapped.sessionKey)), let first = restoring[id]?.first
        else {
            logger.warning("restoring a session failed: its key did not unwrap", metadata: .fields(.session(id)))
            releaseHeld(
                id, restored: nil, failure: ProtocolText.packetFailurePrefix + "the session could not be restored; try again", now, &out)
            return
        }
        // Until one of its packets verifies, its address is only where a datagram claiming it came from.
        let index = table.index(of: id) ?? addLoaded(id, loaded, cipher: cipher, address: first.1.address, active: false, now)
        releaseHeld(id, restored: index, failure: "", now, &out)
    }

    /// Adds a session loaded from the store, with the rooms it follows.
    private mutating func addLoaded(
        _ id: String, _ loaded: IPCLoadedSession, cipher: SessionCipher, address: PeerAddress, active: Bool, _ now: EdgeTime
    ) -> SessionTable.Index {
        // Its last packet was this long ago, as far as the store knows.
        let silence = UInt64(max(0, now.wall - loaded.lastActiveAt)) * 1_000_000_000
        let lastSeen = active ? now.monotonic &- min(silence, now.monotonic) : now.monotonic
        let index = table.addRestored(
            EdgeSession(
                id: id, cipher: cipher, wrappedKey: [], keyDigest: [],
                persisted: true, state: active ? .active : .restored, address: address, lastSeen: lastSeen,
                lastSeenWall: active ? loaded.lastActiveAt : now.wall, replay: SessionReplay(floor: loaded.replayMark),
                userId: loaded.userID.isEmpty ? nil : loaded.userID), source: address.source)
        delivery.addSession(
            index, salt: MessageIdentifier.salt(sessionId: id), source: address.source, userId: loaded.userID.isEmpty ? nil : loaded.userID, acknowledges: loaded.acknowledges, active: active,
            follows: loaded.cursors.map { ($0.roomID, $0.seq) }, now: lastSeen)
        logger.debug("session restored", metadata: .fields(.session(id)))
        return index
    }

    // MARK: - Sessions active lately (at start, and after missed events)

    /// Implementation constant: a failed load of sessions is tried again after this.
    static let resyncRetry: UInt64 = 1_000_000_000

    /// Loads every session active within `BROADCAST_IDLE_SECONDS` (those
    /// that receive broadcasts) and asks the store what came after the
    /// newest event known of each followed room. Sessions already in memory
    /// only gain rooms they did not follow.
    mutating func resynchronise(_ now: EdgeTime, _ out: inout EdgeOutput) {
        guard !loadingSessions else {
            resyncWanted = true
            return
        }
        resyncWanted = false
        loadingSessions = true
        metrics.resynchronisations.increment()
        loadSessions(after: "", resync: true, now, &out)
        readFollowedRooms(now, &out)
    }

    func loadSessions(after: String, resync: Bool, _ now: EdgeTime, _ out: inout EdgeOutput) {
        let request = IPCStoreRequest.loadSessions(
            activeSince: now.wall - Int64(settings.broadcastIdle.components.seconds), after: after, limit: Self.loadPage,
            edge: settings.edgeId)
        out.storeCalls.append((request, .loadPage(after: after, resync: resync)))
    }

    private mutating func pageLoaded(resync: Bool, _ result: Result<IPCStoreResponse, RPCError>, _ now: EdgeTime, _ out: inout EdgeOutput) {
        guard case .success(let response) = result, case .loadedSessions(let page)? = response.result else {
            if case .failure(let error) = result { logger.warning("loading sessions failed; trying again", metadata: .fields(.peer("udpchat-store"), .error(error))) }
            loadingFailed(now)
            return
        }
        guard !page.sessions.isEmpty else {
            loadingDone(now, &out)
            return
        }
        // Sessions already here need no key: only those new to this edge go to udpchat-keys.
        var actions: [DeliveryEngine.Output] = []
        var unknown: [IPCLoadedSession] = []
        for loaded in page.sessions {
            if let index = table.index(of: loaded.sessionID) {
                merge(loaded, into: index, now, &actions)
            } else {
                unknown.append(loaded)
            }
        }
        perform(actions, now, &out)
        guard !unknown.isEmpty else {
            nextPage(after: page.sessions.last!.sessionID, more: page.more, resync: resync, now, &out)
            return
        }
        let request = IPCKeysRequest.unwrap(unknown.map { ($0.sessionID, $0.wrappedKey) })
        out.keysCalls.append((request, .unwrapPage(unknown, resync: resync, more: page.more, last: page.sessions.last!.sessionID)))
    }

    private mutating func pageUnwrapped(
        _ page: [IPCLoadedSession], resync: Bool, more: Bool, last: String, _ result: Result<IPCKeysResponse, RPCError>, _ now: EdgeTime,
        _ out: inout EdgeOutput
    ) {
        guard case .success(let response) = result, case .unwrappedKeys(let keys)? = response.result,
            keys.sessionKeys.count == page.count
        else {
            if case .failure(let error) = result { logger.warning("unwrapping loaded sessions failed; trying again", metadata: .fields(.peer("udpchat-keys"), .error(error))) }
            loadingFailed(now)
            return
        }
        var actions: [DeliveryEngine.Output] = []
        var added = 0
        for (loaded, key) in zip(page, keys.sessionKeys) {
            if let index = table.index(of: loaded.sessionID) {
                // Restored meanwhile, for a datagram of its own.
                merge(loaded, into: index, now, &actions)
                continue
            }
            guard let cipher = SessionCipher(keyBytes: [UInt8](key)), let address = PeerAddress(loaded.address) else { continue }
            _ = addLoaded(loaded.sessionID, loaded, cipher: cipher, address: address, active: true, now)
            added += 1
        }
        if added > 0 {
            loadAddedFollows = true
            logger.info("resumed the sessions active lately", metadata: .fields(.count(added)))
        }
        perform(actions, now, &out)
        nextPage(after: last, more: more, resync: resync, now, &out)
    }

    private mutating func nextPage(after last: String, more: Bool, resync: Bool, _ now: EdgeTime, _ out: inout EdgeOutput) {
        if more {
            loadSessions(after: last, resync: resync, now, &out)
        } else {
            loadingDone(now, &out)
        }
    }

    /// A loaded session this edge holds already gains the rooms it did not follow.
    private mutating func merge(_ loaded: IPCLoadedSession, into index: SessionTable.Index, _ now: EdgeTime, _ actions: inout [DeliveryEngine.Output]) {
        // Restored for a datagram that never verified (anyone may name a
        // session): the store's address is the one its client used.
        if table[index]?.state == .restored, let address = PeerAddress(loaded.address) {
            table.update(index) { session in
                session.address = address
                session.state = .active
            }
            delivery.heard(index, now: now.monotonic, &actions)
            loadAddedFollows = true  // its rooms are read after the load, as a new session's
        }
        if delivery.addMissingFollows(index, loaded.cursors.map { ($0.roomID, $0.seq) }, now: now.monotonic, &actions) {
            loadAddedFollows = true
        }
    }

    private mutating func loadingDone(_ now: EdgeTime, _ out: inout EdgeOutput) {
        loadingSessions = false
        // The rooms the sessions just loaded follow: what came after their cursors.
        if loadAddedFollows { readFollowedRooms(now, &out) }
        loadAddedFollows = false
        if resyncWanted { resynchronise(now, &out) }
    }

    private mutating func loadingFailed(_ now: EdgeTime) {
        loadingSessions = false
        resyncWanted = true
        resyncRetryAt = now.monotonic &+ Self.resyncRetry
    }

    private mutating func readFollowedRooms(_ now: EdgeTime, _ out: inout EdgeOutput) {
        var actions: [DeliveryEngine.Output] = []
        delivery.readFollowedRooms(&actions)
        perform(actions, now, &out)
    }

    // MARK: - Reports to the store

    /// Liveness, replay marks, addresses, whether each session acknowledges,
    /// and the cursors that moved, in batches (no datagram and no ACK costs
    /// a write of its own).
    mutating func report(_ now: EdgeTime, _ out: inout EdgeOutput) {
        var activities: [IPCSessionActivity] = []
        var reports: [SessionReport] = []
        for index in table.indices {
            guard let session = table[index], session.persisted else { continue }
            let delivered = delivery.takeReport(index)
            guard session.dirty || delivered != nil else { continue }
            var activity = IPCSessionActivity()
            activity.sessionID = session.id
            activity.lastActiveAt = session.lastSeenWall
            activity.replayMark = session.replay.highest
            if session.state == .active { activity.address = session.address.description }
            // Heard here (not only delivered to): this edge delivers its broadcasts now.
            if session.dirty { activity.edge = settings.edgeId }
            if let delivered {
                activity.acknowledges = delivered.acknowledges
                activity.cursors = delivered.cursors.map(IPCRoomCursor.init)
            }
            table.update(index) { $0.dirty = false }
            activities.append(activity)
            reports.append(SessionReport(session: index, sessionId: session.id, cursors: delivered?.cursors ?? []))
            if activities.count == Self.reportBatch { sendReport(&activities, &reports, &out) }
        }
        if !activities.isEmpty { sendReport(&activities, &reports, &out) }
    }

    private mutating func sendReport(_ activities: inout [IPCSessionActivity], _ reports: inout [SessionReport], _ out: inout EdgeOutput) {
        out.storeCalls.append((.touchSessions(activities), .report(reports)))
        reportsInFlight += 1
        activities.removeAll()
        reports.removeAll()
    }
}
