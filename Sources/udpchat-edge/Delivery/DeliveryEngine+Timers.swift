import ChatWire

/// The engine's acknowledgements and timers: what an ACK completes, which
/// deadline is due, and what a timed-out copy or control becomes.
extension DeliveryEngine {
    // MARK: - Acknowledgements and timers

    /// An ACK from the session: the copy is done, the round trip is
    /// measured (for a copy sent once), and the room's next event goes out.
    mutating func acknowledge(_ s: Int32, _ msgId: MessageIdentifier, now: UInt64, _ out: inout [Output]) {
        guard sessions[s] != nil else { return }
        if !sessions[s]!.acknowledges {
            sessions[s]!.acknowledges = true
            sessions[s]!.acknowledgesReported = false
        }
        if let index = sessions[s]!.control.firstIndex(where: { msgId.transmission(of: $0.msgId) != nil }) {
            let copy = sessions[s]!.control.remove(at: index)
            sessions[s]!.releaseEmptyStorage()
            let transmission = msgId.transmission(of: copy.msgId)!
            measure(s, sentAt: copy.sent.time(of: transmission, latest: copy.transmissions), first: copy.firstSent, now: now, &out)
            // A newer room list came meanwhile: now it goes.
            if copy.kind == .roomList, sessions[s]!.roomListVersion < roomListVersion, canSend(s, now: now) {
                sendNewestRoomList(s, now: now, &out)
            }
            return
        }
        let (roomKey, seq, transmission) = msgId.roomEvent(salt: sessions[s]!.salt)
        guard let room = roomByKey[roomKey], let f = sessions[s]!.followIndex(room),
            let index = sessions[s]!.follows[f].inFlight.firstIndex(where: { $0.seq == seq })
        else { return }
        let copy = sessions[s]!.follows[f].inFlight.remove(at: index)
        sessions[s]!.follows[f].settle()
        measure(s, sentAt: copy.sent.time(of: transmission, latest: copy.transmissions), first: copy.firstSent, now: now, &out)
        pump(s, room: room, now: now, &out)
        sessions[s]?.releaseEmptyStorage()
    }

    /// When the next retransmission or retry is due, if any.
    mutating func nextDeadline() -> UInt64? {
        while let top = deadlines.min {
            if isCurrent(top) { return min(top.due, readRetries.map(\.at).min() ?? .max) }
            deadlines.removeMin()
        }
        return readRetries.map(\.at).min()
    }

    /// Retransmissions, expiries and retries due at `now`.
    mutating func due(now: UInt64, _ out: inout [Output]) {
        while let top = deadlines.min, top.due <= now {
            deadlines.removeMin()
            guard isCurrent(top) else { continue }
            if top.room < 0 { controlTimedOut(top, now: now, &out) } else { copyTimedOut(top, now: now, &out) }
        }
        if !readRetries.isEmpty {
            let ready = readRetries.filter { $0.at <= now }
            readRetries.removeAll { $0.at <= now }
            for (room, _) in ready { pumpFollowers(of: room, now: now, &out) }
        }
    }

    /// From now on nothing new is sent; copies on their way are still
    /// retransmitted and may be confirmed.
    mutating func startDraining() { draining = true }

    /// Copies on their way to sessions that acknowledge and are reachable:
    /// those a graceful shutdown waits for.
    var awaitedByAcknowledgers: Int {
        sessions.values.reduce(0) { $0 + ($1.acknowledges && !$1.unreachable ? $1.inFlight : 0) }
    }

    /// Copies on their way, in all.
    var inFlight: Int { sessions.values.reduce(0) { $0 + $1.inFlight } }

    /// Cursors that moved since they were last reported, marking them
    /// reported; and whether `acknowledges` changed.
    mutating func takeReport(_ s: Int32) -> (cursors: [(String, UInt64)], acknowledges: Bool)? {
        guard let session = sessions[s] else { return nil }
        var cursors: [(String, UInt64)] = []
        for (f, follow) in session.follows.enumerated() where follow.delivered > follow.reported {
            cursors.append((rooms[follow.room]!.roomId, follow.delivered))
            sessions[s]!.follows[f].reported = follow.delivered
        }
        let acknowledgesChanged = !session.acknowledgesReported
        sessions[s]!.acknowledgesReported = true
        guard !cursors.isEmpty || acknowledgesChanged else { return nil }
        return (cursors, session.acknowledges)
    }

    /// A report failed: its cursors are reported again next time.
    mutating func reportFailed(_ s: Int32, cursors: [(String, UInt64)]) {
        guard sessions[s] != nil else { return }
        for (roomId, seq) in cursors {
            guard let room = roomIndex[roomId], let f = sessions[s]!.followIndex(room) else { continue }
            if sessions[s]!.follows[f].reported <= seq { sessions[s]!.follows[f].reported = 0 }
        }
        sessions[s]!.acknowledgesReported = false
    }

    /// Forgets rooms nobody follows (their logs go with them).
    mutating func pruneRooms() {
        // What every follower of a room has had need not stay in memory.
        for (room, ids) in followers where !ids.isEmpty && rooms[room] != nil {
            var least = UInt64.max
            for s in ids {
                guard let session = sessions[s], let f = session.followIndex(room) else { continue }
                least = min(least, session.follows[f].delivered)
            }
            if least != .max && least > 0 { rooms[room]!.release(through: least) }
        }
        for (room, ids) in followers where ids.isEmpty && reads[room, default: []].isEmpty {
            followers[room] = nil
            if let log = rooms.removeValue(forKey: room) {
                roomIndex[log.roomId] = nil
                roomByKey[log.key] = nil
            }
            reads[room] = nil
        }
    }

    // MARK: - Timeouts

    private func isCurrent(_ deadline: Deadline) -> Bool {
        guard let session = sessions[deadline.session] else { return false }
        if deadline.room < 0 {
            return session.control.contains { $0.msgId.low == deadline.seq && $0.due == deadline.due }
        }
        guard let f = session.followIndex(deadline.room) else { return false }
        return session.follows[f].inFlight.contains { $0.seq == deadline.seq && $0.due == deadline.due }
    }

    /// What becomes of a copy whose timeout passed: sent again, given up, or
    /// its session declared unreachable.
    private enum Verdict {
        case retransmit(due: UInt64)
        case giveUp
        case unreachable
    }

    private mutating func verdict(_ s: Int32, firstSent: UInt64, transmissions: Int, now: UInt64) -> Verdict {
        switch policy.timing {
        case .fixed(let interval, let total):
            return transmissions >= total ? .giveUp : .retransmit(due: now &+ interval)
        case .adaptive(let budget):
            if now &- firstSent >= budget { return sessions[s]!.acknowledges ? .unreachable : .giveUp }
            // A lone loss is not congestion: the first retransmissions wait one
            // timeout each; only a copy still unacknowledged after that many
            // backs off (see `persistentLoss`).
            adoptPath(s)
            if transmissions >= Self.persistentLoss { sessions[s]!.estimator.timedOut() }
            return .retransmit(due: min(now &+ sessions[s]!.estimator.rto, firstSent &+ budget))
        }
    }

    private mutating func copyTimedOut(_ deadline: Deadline, now: UInt64, _ out: inout [Output]) {
        let s = deadline.session
        let f = sessions[s]!.followIndex(deadline.room)!
        let index = sessions[s]!.follows[f].inFlight.firstIndex { $0.seq == deadline.seq }!
        let copy = sessions[s]!.follows[f].inFlight[index]
        switch verdict(s, firstSent: copy.firstSent, transmissions: copy.transmissions, now: now) {
        case .retransmit(let due):
            let transmission = copy.transmissions + 1
            sessions[s]!.follows[f].inFlight[index].transmissions = transmission
            sessions[s]!.follows[f].inFlight[index].sent.record(transmission, at: now)
            sessions[s]!.follows[f].inFlight[index].lastSent = now
            sessions[s]!.follows[f].inFlight[index].due = due
            deadlines.insert(Deadline(due: due, session: s, room: deadline.room, seq: copy.seq))
            guard case .entry(let entry)? = rooms[deadline.room]?.lookup(copy.seq), let key = rooms[deadline.room]?.key else {
                // Evicted from memory meanwhile (a huge burst): read it back, send it then.
                sessions[s]!.follows[f].rewind(to: copy.seq)
                pump(s, room: deadline.room, now: now, &out)
                return
            }
            let msgId = MessageIdentifier.roomEvent(
                roomKey: key, seq: copy.seq, salt: sessions[s]!.salt, transmission: numbered(transmission))
            for _ in 0..<datagrams(afterTransmissions: copy.transmissions) {
                out.append(.send(session: s, msgId: msgId, template: entry.template, retransmission: true))
            }
        case .giveUp:
            sessions[s]!.follows[f].inFlight.remove(at: index)
            sessions[s]!.follows[f].settle()
            pump(s, room: deadline.room, now: now, &out)
        case .unreachable:
            markUnreachable(s, &out)
        }
    }

    private mutating func controlTimedOut(_ deadline: Deadline, now: UInt64, _ out: inout [Output]) {
        let s = deadline.session
        let index = sessions[s]!.control.firstIndex { $0.msgId.low == deadline.seq }!
        var copy = sessions[s]!.control[index]
        // A room list outdated on its way: the newest goes in its place, with an id of its own.
        if copy.kind == .roomList, sessions[s]!.roomListVersion < roomListVersion, let latest = latestRoomList {
            sessions[s]!.roomListVersion = roomListVersion
            copy.template = latest
            copy.msgId = MessageIdentifier.random()
            sessions[s]!.control[index] = copy
        }
        switch verdict(s, firstSent: copy.firstSent, transmissions: copy.transmissions, now: now) {
        case .retransmit(let due):
            let transmission = copy.transmissions + 1
            sessions[s]!.control[index].transmissions = transmission
            sessions[s]!.control[index].sent.record(transmission, at: now)
            sessions[s]!.control[index].lastSent = now
            sessions[s]!.control[index].due = due
            deadlines.insert(Deadline(due: due, session: s, room: -1, seq: copy.msgId.low))
            for _ in 0..<datagrams(afterTransmissions: copy.transmissions) {
                out.append(
                    .send(session: s, msgId: copy.msgId.transmission(numbered(transmission)), template: copy.template, retransmission: true))
            }
        case .giveUp:
            sessions[s]!.control.remove(at: index)
        case .unreachable:
            markUnreachable(s, &out)
        }
    }

    /// Stops sending to the session. Its cursors stay where they are, so
    /// when it speaks again it receives everything from there on; its
    /// notices are dropped. Copies sent again then carry new ids: a late
    /// ACK of an earlier transmission would otherwise pass for theirs and
    /// give a round trip of almost nothing.
    private mutating func markUnreachable(_ s: Int32, _ out: inout [Output]) {
        sessions[s]!.unreachable = true
        sessions[s]!.salt = MessageIdentifier.nextSalt(sessions[s]!.salt)
        sessions[s]!.control.removeAll()
        for f in sessions[s]!.follows.indices {
            sessions[s]!.follows[f].rewind(to: sessions[s]!.follows[f].delivered + 1)
        }
        out.append(.unreachable(session: s))
    }
}
