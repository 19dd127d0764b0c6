import ChatWire

/// The engine's sending: which copy goes out next to a session, and the
/// rooms each session follows.
extension DeliveryEngine {
    // MARK: - Sending

    func canSend(_ s: Int32, now: UInt64) -> Bool {
        guard !draining, let session = sessions[s] else { return false }
        return session.active && !session.unreachable && now &- session.lastHeard <= policy.broadcastIdle
    }

    mutating func pumpFollowers(of room: Int32, now: UInt64, _ out: inout [Output]) {
        guard let ids = followers[room] else { return }
        for s in ids { pump(s, room: room, now: now, &out) }
    }

    mutating func pumpAll(_ s: Int32, now: UInt64, _ out: inout [Output]) {
        guard sessions[s] != nil else { return }
        for room in sessions[s]!.follows.map(\.room) { pump(s, room: room, now: now, &out) }
        // The newest room list, if one went out while it was silent.
        if canSend(s, now: now), sessions[s]!.roomListVersion < roomListVersion,
            !sessions[s]!.control.contains(where: { $0.kind == .roomList })
        {
            sendNewestRoomList(s, now: now, &out)
        }
    }

    /// Whether a read after `seq` should be sent now: false when one that
    /// covers `seq + 1` is already under way. Records the read when true.
    mutating func beginRead(_ room: Int32, after seq: UInt64) -> Bool {
        let first = seq + 1
        let page = UInt64(RoomLog.pageSize)
        if reads[room, default: []].contains(where: { first >= $0 && first < $0 + page }) { return false }
        reads[room, default: []].append(first)
        return true
    }

    mutating func endRead(_ room: Int32, after seq: UInt64) {
        if let index = reads[room]?.firstIndex(of: seq + 1) { reads[room]!.remove(at: index) }
    }

    /// Sends the session the room's next events, as many as its window allows.
    mutating func pump(_ s: Int32, room: Int32, now: UInt64, _ out: inout [Output]) {
        guard canSend(s, now: now), let f = sessions[s]!.followIndex(room), rooms[room] != nil else { return }
        let window = sessions[s]!.acknowledges ? 1 : policy.unorderedWindow
        let userId = sessions[s]!.userId
        let head = rooms[room]!.head
        while sessions[s]!.follows[f].inFlight.count < window {
            let sent = sessions[s]!.follows[f].sent
            let next = sent + 1
            if next > head {
                if rooms[room]!.closed && sessions[s]!.follows[f].inFlight.isEmpty { removeFollow(s, room: room) }
                return
            }
            if sessions[s]!.follows[f].inFlight.isEmpty, head - sessions[s]!.follows[f].delivered > policy.maximumBacklog {
                let target = head - policy.maximumBacklog
                out.append(.skipped(session: s, room: rooms[room]!.roomId, count: target - sent))
                sessions[s]!.follows[f].sent = target
                sessions[s]!.follows[f].settle()
                continue
            }
            let entry: RoomLog.Entry
            switch rooms[room]!.lookup(next) {
            case .entry(let found): entry = found
            case .forgotten:
                sessions[s]!.follows[f].sent = next
                sessions[s]!.follows[f].settle()
                continue
            case .beyondHead: return
            case .missing:
                if beginRead(room, after: sent) { out.append(.read(room: rooms[room]!.roomId, after: sent)) }
                return
            }
            sessions[s]!.follows[f].sent = next
            let memberBefore = sessions[s]!.follows[f].member
            var deliver = memberBefore
            switch entry.subject {
            case .joined(let user) where user == userId:
                sessions[s]!.follows[f].member = true
                deliver = true
            case .left(let user) where user == userId:
                sessions[s]!.follows[f].member = false
                deliver = false
            case .unsendable:
                deliver = false
            default: break
            }
            if deliver {
                let due = now &+ firstTimeout(s)
                var copy = InFlightCopy(seq: next, firstSent: now, lastSent: now, transmissions: 1, due: due, memberBefore: memberBefore)
                copy.sent.record(1, at: now)
                sessions[s]!.follows[f].inFlight.append(copy)
                deadlines.insert(Deadline(due: due, session: s, room: room, seq: next))
                out.append(
                    .send(
                        session: s, msgId: .roomEvent(roomKey: rooms[room]!.key, seq: next, salt: sessions[s]!.salt, transmission: 1),
                        template: entry.template, retransmission: false))
            }
            sessions[s]!.follows[f].settle()
        }
    }

    mutating func sendControl(
        _ s: Int32, _ template: CopyTemplate, kind: ControlCopy.Kind, now: UInt64, _ out: inout [Output]
    ) {
        let msgId = MessageIdentifier.random()
        let due = now &+ firstTimeout(s)
        var copy = ControlCopy(
            msgId: msgId, template: template, kind: kind, firstSent: now, lastSent: now, transmissions: 1, due: due)
        copy.sent.record(1, at: now)
        if kind == .roomList, let index = sessions[s]!.control.firstIndex(where: { $0.kind == .roomList }) {
            sessions[s]!.control[index] = copy
        } else {
            if sessions[s]!.control.count >= Self.controlCapacity {
                // The oldest notice gives way; a room list is replaced, never dropped.
                if let oldest = sessions[s]!.control.firstIndex(where: { $0.kind == .notice }) {
                    sessions[s]!.control.remove(at: oldest)
                } else {
                    return
                }
            }
            sessions[s]!.control.append(copy)
        }
        deadlines.insert(Deadline(due: due, session: s, room: -1, seq: msgId.low))
        out.append(.send(session: s, msgId: msgId, template: template, retransmission: false))
    }

    private mutating func firstTimeout(_ s: Int32) -> UInt64 {
        switch policy.timing {
        case .fixed(let interval, _): return interval
        case .adaptive(let budget):
            adoptPath(s)
            return min(sessions[s]!.estimator.rto, budget)
        }
    }

    /// A session with no round trip of its own yet takes the one measured
    /// from its address lately (sessions that shook hands together before
    /// any of them had one learn it from the first that did).
    mutating func adoptPath(_ s: Int32) {
        guard sessions[s]!.estimator.smoothed == nil, let source = sessions[s]!.source, let known = paths[source] else { return }
        sessions[s]!.estimator.adopt(known)
    }

    /// An ACK of the transmission sent at `sentAt` (nil when it is no longer
    /// known): the backoff ends, and its round trip is a sample.
    mutating func measure(_ s: Int32, sentAt: UInt64?, first: UInt64, now: UInt64, _ out: inout [Output]) {
        sessions[s]!.estimator.acknowledged()
        if let sentAt, now >= sentAt {
            sessions[s]!.estimator.sample(now - sentAt)
            if let source = sessions[s]!.source {
                if paths[source] == nil && paths.count >= Self.pathCapacity { paths.remove(at: paths.startIndex) }
                paths[source] = sessions[s]!.estimator
            }
        }
        out.append(.acknowledged(roundTrip: now &- first))
    }

    // MARK: - Rooms and follows

    mutating func room(for roomId: String) -> Int32 {
        if let room = roomIndex[roomId] { return room }
        let room = nextRoom
        nextRoom += 1
        let log = RoomLog(roomId: roomId)
        rooms[room] = log
        roomIndex[roomId] = room
        roomByKey[log.key] = room
        followers[room] = []
        return room
    }

    mutating func addFollow(_ s: Int32, room: Int32, after seq: UInt64) {
        guard sessions[s] != nil, sessions[s]!.followIndex(room) == nil else { return }
        sessions[s]!.follows.append(RoomFollow(room: room, after: seq))
        followers[room, default: []].insert(s)
    }

    mutating func removeFollow(_ s: Int32, room: Int32) {
        guard sessions[s] != nil, let f = sessions[s]!.followIndex(room) else { return }
        sessions[s]!.follows.remove(at: f)
        followers[room]?.remove(s)
    }

    mutating func removeFromUser(_ user: String, _ s: Int32) {
        byUser[user]?.removeAll { $0 == s }
        if byUser[user]?.isEmpty == true { byUser[user] = nil }
    }

    mutating func addToUser(_ user: String, _ s: Int32) {
        if byUser[user]?.contains(s) != true { byUser[user, default: []].append(s) }
    }
}
