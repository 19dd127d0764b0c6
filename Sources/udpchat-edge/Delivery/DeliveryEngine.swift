import ChatWire
import HeapModule

/// Reliable, ordered delivery of broadcasts, derived from the rooms' logs
/// and each session's cursors (docs/architecture.md, "Delivery from durable
/// state"; docs/protocol.md §6).
///
/// Rooms hold their events once (``RoomLog``); sessions hold a cursor per
/// room and the few copies on their way (``SessionDelivery``). A copy is
/// sent and sent again until its session acknowledges it:
///
/// - **Adaptive timing** (the default): each retransmission after the
///   session's RTO (``RTTEstimator``), doubling after each timeout, until a
///   time budget runs out. A session that acknowledges and lets a copy run
///   out of budget is unreachable: nothing more is sent to it until it
///   speaks, and then delivery resumes from its cursor, so nothing is lost.
///   A session that has never acknowledged gives up the copy instead.
/// - **Fixed timing** (the original's): every `interval`, `transmissions`
///   sends in all, then the copy is given up.
///
/// A session that acknowledges receives each room's events one at a time,
/// in commit order; one that never did gets up to ``unorderedWindow`` at
/// once. A session more than ``maximumBacklog`` events behind a room skips
/// the oldest (they stay in the room's history): the backlog is bounded,
/// and a sender never waits for a slow receiver.
///
/// A pure state machine: events with the time (monotonic nanoseconds) in,
/// ``Output`` out; no I/O, no clock of its own. Not thread-safe.
struct DeliveryEngine {
    enum Timing: Equatable {
        case adaptive(budget: UInt64)
        case fixed(interval: UInt64, transmissions: Int)
    }

    struct Policy {
        var timing: Timing
        /// A session silent this long receives nothing until it speaks again.
        var broadcastIdle: UInt64
        /// Implementation constant: copies on their way at once, per room,
        /// to a session that has never acknowledged (it is not held to
        /// commit order, but neither is it flooded).
        var unorderedWindow = 32
        /// Implementation constant: a session further behind a room than
        /// this skips to this many events before the newest. At the rates a
        /// person reads, that is hours of conversation; at a flood's rate it
        /// keeps one slow receiver from holding the room's log open forever.
        var maximumBacklog: UInt64 = 2000
    }

    enum Output: Equatable {
        /// Send this copy to the session, sealed under a fresh nonce.
        case send(session: Int32, msgId: MessageIdentifier, template: CopyTemplate, retransmission: Bool)
        /// Read the room's events after `after` from the store, then call ``eventsRead``.
        case read(room: String, after: UInt64)
        /// A copy was acknowledged this long after its first transmission.
        case acknowledged(roundTrip: UInt64)
        /// The session let a copy run out of budget; it gets nothing until it speaks.
        case unreachable(session: Int32)
        /// The session was too far behind a room and skipped `count` events.
        case skipped(session: Int32, room: String, count: UInt64)
    }

    /// Implementation constant: a read of the store that failed is tried again after this.
    static let readRetry: UInt64 = 500_000_000
    /// Implementation constant: copies outside the rooms a session may have on their way.
    static let controlCapacity = 16
    /// Retransmissions of one copy, one timeout apart, before they back off. With one
    /// copy in flight per room, doubling from the first loss makes a lossy
    /// path slow for good: with a third of datagrams lost each way half the
    /// attempts fail, a doubling wait grows faster than that probability
    /// shrinks, and a session then drains more slowly than a busy room
    /// fills. RFC 9002 §7.6 likewise waits for losses spanning three probe
    /// timeouts (`kPersistentCongestionThreshold`) before it treats them as
    /// congestion.
    static let persistentLoss = 3

    /// Datagrams for a retransmission of a copy already sent `transmissions`
    /// times. A copy that a retransmission did not get through goes out twice
    /// from then on (fresh nonces, the same `msg_id`; the client shows it
    /// once): on a path that loses a third of datagrams each way a round trip
    /// succeeds half the time, two copies make it about three times in four,
    /// and a run of losses that holds a room back for seconds becomes rare. A
    /// first retransmission is often spurious (an ACK merely late), so it is
    /// not doubled. Measured on a simulated path losing 30 % each way at ten
    /// events a second: the 99th percentile fell from 7.7 s to 0.8 s. Fixed
    /// timing keeps the original's one datagram per transmission.
    /// The transmission number a `msg_id` carries: its own with adaptive
    /// timing; with fixed timing every transmission carries the first's id,
    /// as the original server's copies did (docs/protocol.md §6.2).
    func numbered(_ transmission: Int) -> Int {
        guard case .adaptive = policy.timing else { return 1 }
        return transmission
    }

    func datagrams(afterTransmissions transmissions: Int) -> Int {
        guard case .adaptive = policy.timing else { return 1 }
        return transmissions >= 2 ? 2 : 1
    }

    let policy: Policy
    private(set) var rooms: [Int32: RoomLog] = [:]
    private var roomIndex: [String: Int32] = [:]
    private var roomByKey: [UInt64: Int32] = [:]
    private var followers: [Int32: Set<Int32>] = [:]
    private var nextRoom: Int32 = 0
    private(set) var sessions: [Int32: SessionDelivery] = [:]
    /// A user's sessions here (few: an array costs less than a set).
    private var byUser: [String: [Int32]] = [:]
    private var deadlines = Heap<Deadline>()
    private var readRetries: [(room: Int32, at: UInt64)] = []
    /// Reads of the store under way per room: the first sequence number each asked for.
    private var reads: [Int32: [UInt64]] = [:]
    private var latestRoomList: CopyTemplate?
    private var roomListVersion: UInt64 = 0
    /// The round trip last measured from each source address, for sessions
    /// that start there (``RTTEstimator/adopt(_:)``); bounded.
    private var paths: [String: RTTEstimator] = [:]

    /// Implementation constant: sources whose round trip is remembered.
    static let pathCapacity = 16_384
    /// Shutting down: copies on their way may still be confirmed, nothing new is sent.
    private(set) var draining = false

    private struct Deadline: Comparable {
        var due: UInt64
        var session: Int32
        /// The room, or -1 for a control copy.
        var room: Int32
        /// The event's sequence number, or the control copy's id (low half).
        var seq: UInt64
        static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.due < rhs.due }
    }

    init(policy: Policy) { self.policy = policy }

    // MARK: - Sessions

    /// A session the edge now holds, following `follows` (room id, cursor).
    mutating func addSession(
        _ s: Int32, salt: UInt64, source: String? = nil, userId: String?, acknowledges: Bool, active: Bool, follows: [(String, UInt64)],
        now: UInt64
    ) {
        removeSession(s)
        sessions[s] = SessionDelivery(salt: salt, userId: userId, acknowledges: acknowledges, active: active, lastHeard: now)
        sessions[s]!.source = source
        sessions[s]!.roomListVersion = roomListVersion
        if let userId { addToUser(userId, s) }
        for (roomId, seq) in follows { addFollow(s, room: room(for: roomId), after: seq) }
    }

    mutating func removeSession(_ s: Int32) {
        guard let session = sessions.removeValue(forKey: s) else { return }
        if let user = session.userId { removeFromUser(user, s) }
        for follow in session.follows { followers[follow.room]?.remove(s) }
    }

    /// The session's user changed (LOGIN, MERGE_SESSION, LOGOUT); the
    /// rooms it follows come with the store's answer (``replaceFollows``).
    mutating func setUser(_ s: Int32, _ userId: String?) {
        guard sessions[s] != nil, sessions[s]!.userId != userId else { return }
        if let old = sessions[s]!.userId { removeFromUser(old, s) }
        sessions[s]!.userId = userId
        if let userId { addToUser(userId, s) }
    }

    /// The session's own packet arrived: it is active and reachable, and
    /// delivery resumes where it stopped.
    mutating func heard(_ s: Int32, now: UInt64, _ out: inout [Output]) {
        guard sessions[s] != nil else { return }
        let resumed = sessions[s]!.unreachable || !sessions[s]!.active || now &- sessions[s]!.lastHeard > policy.broadcastIdle
        sessions[s]!.lastHeard = now
        sessions[s]!.active = true
        sessions[s]!.unreachable = false
        if resumed { pumpAll(s, now: now, &out) }
    }

    /// The rooms the session follows now, as the store reported them after
    /// a request that changed them: new ones are added from the given
    /// cursor, the edge's own cursor is kept for the others, and rooms no
    /// longer listed are dropped.
    mutating func replaceFollows(_ s: Int32, with follows: [(String, UInt64)], now: UInt64, _ out: inout [Output]) {
        guard let session = sessions[s] else { return }
        let wanted = Dictionary(follows.map { (room(for: $0.0), $0.1) }, uniquingKeysWith: max)
        for follow in session.follows where wanted[follow.room] == nil { removeFollow(s, room: follow.room) }
        for (room, seq) in wanted where sessions[s]!.followIndex(room) == nil {
            addFollow(s, room: room, after: seq)
            pump(s, room: room, now: now, &out)
        }
    }

    /// Adds the rooms among `follows` the session does not follow yet (a
    /// resynchronisation after the store came back); returns whether any was.
    @discardableResult
    mutating func addMissingFollows(_ s: Int32, _ follows: [(String, UInt64)], now: UInt64, _ out: inout [Output]) -> Bool {
        guard sessions[s] != nil else { return false }
        var added = false
        for (roomId, seq) in follows {
            let room = room(for: roomId)
            guard sessions[s]!.followIndex(room) == nil else { continue }
            addFollow(s, room: room, after: seq)
            pump(s, room: room, now: now, &out)
            added = true
        }
        return added
    }

    /// The session stops following a room (it left it).
    mutating func unfollow(_ s: Int32, roomId: String) {
        guard let room = roomIndex[roomId] else { return }
        removeFollow(s, room: room)
    }

    // MARK: - Events

    /// A room event as the store published it: kept once in the room's log,
    /// followed from here by member sessions that did not follow the room,
    /// and sent to every follower that is waiting for it.
    mutating func roomEvent(_ entry: RoomLog.Entry, roomId: String, recipients: [String], now: UInt64, _ out: inout [Output]) {
        let room = room(for: roomId)
        rooms[room]!.insert(entry)
        for user in recipients {
            guard let ids = byUser[user] else { continue }
            for s in ids where sessions[s]!.followIndex(room) == nil { addFollow(s, room: room, after: entry.seq - 1) }
        }
        pumpFollowers(of: room, now: now, &out)
    }

    /// Events read from the store after `after` (oldest first), with the
    /// room's newest sequence number; `closed` when no more will come.
    mutating func eventsRead(
        roomId: String, after: UInt64, head: UInt64, closed: Bool, entries: [RoomLog.Entry], now: UInt64, _ out: inout [Output]
    ) {
        guard let room = roomIndex[roomId] else { return }
        endRead(room, after: after)
        rooms[room]!.advanceHead(to: head)
        if closed { rooms[room]!.closed = true }
        // Events the log no longer holds (pruned) are skipped, not asked for forever.
        let available = entries.first?.seq ?? (head + 1)
        if available > after + 1 { rooms[room]!.forget(through: available - 1) }
        for entry in entries { rooms[room]!.insert(entry) }
        pumpFollowers(of: room, now: now, &out)
    }

    /// A read of the store failed: it is tried again shortly.
    mutating func readFailed(roomId: String, after: UInt64, now: UInt64) {
        guard let room = roomIndex[roomId] else { return }
        endRead(room, after: after)
        readRetries.append((room, now &+ Self.readRetry))
    }

    /// Asks the store what came after the newest event known of each room
    /// that has followers (or after the least a follower has, when that is
    /// newer: a room just loaded knows no events yet).
    mutating func readFollowedRooms(_ out: inout [Output]) {
        for (room, ids) in followers where !ids.isEmpty {
            var least = UInt64.max
            for s in ids {
                if let f = sessions[s]?.followIndex(room) { least = min(least, sessions[s]!.follows[f].sent) }
            }
            if least == .max { least = 0 }
            let after = max(rooms[room]!.head, least)
            if beginRead(room, after: after) { out.append(.read(room: rooms[room]!.roomId, after: after)) }
        }
    }

    /// A new room list for every active session. Only the newest matters:
    /// a session with a room list on its way gets the newest when that one
    /// is acknowledged or due again, so each has at most one on its way
    /// however fast the list changes (CREATE_ROOM in a loop costs one copy
    /// per session per round trip, not one per change).
    mutating func roomList(_ template: CopyTemplate, now: UInt64, _ out: inout [Output]) {
        latestRoomList = template
        roomListVersion += 1
        for s in Array(sessions.keys) where canSend(s, now: now) {
            guard !sessions[s]!.control.contains(where: { $0.kind == .roomList }) else { continue }
            sendNewestRoomList(s, now: now, &out)
        }
    }

    private mutating func sendNewestRoomList(_ s: Int32, now: UInt64, _ out: inout [Output]) {
        guard let latest = latestRoomList else { return }
        sessions[s]!.roomListVersion = roomListVersion
        sendControl(s, latest, kind: .roomList, now: now, &out)
    }

    /// A broadcast for some sessions outside the rooms (ROOM_JOINED,
    /// ROOM_LEFT, a late ERROR).
    mutating func notice(_ template: CopyTemplate, to targets: [Int32], now: UInt64, _ out: inout [Output]) {
        for s in targets where canSend(s, now: now) { sendControl(s, template, kind: .notice, now: now, &out) }
    }

    /// Sessions of a user on this edge.
    func sessions(ofUser user: String) -> [Int32] { byUser[user] ?? [] }

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

    // MARK: - Sending

    private func canSend(_ s: Int32, now: UInt64) -> Bool {
        guard !draining, let session = sessions[s] else { return false }
        return session.active && !session.unreachable && now &- session.lastHeard <= policy.broadcastIdle
    }

    private mutating func pumpFollowers(of room: Int32, now: UInt64, _ out: inout [Output]) {
        guard let ids = followers[room] else { return }
        for s in ids { pump(s, room: room, now: now, &out) }
    }

    private mutating func pumpAll(_ s: Int32, now: UInt64, _ out: inout [Output]) {
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
    private mutating func beginRead(_ room: Int32, after seq: UInt64) -> Bool {
        let first = seq + 1
        let page = UInt64(RoomLog.pageSize)
        if reads[room, default: []].contains(where: { first >= $0 && first < $0 + page }) { return false }
        reads[room, default: []].append(first)
        return true
    }

    private mutating func endRead(_ room: Int32, after seq: UInt64) {
        if let index = reads[room]?.firstIndex(of: seq + 1) { reads[room]!.remove(at: index) }
    }

    /// Sends the session the room's next events, as many as its window allows.
    private mutating func pump(_ s: Int32, room: Int32, now: UInt64, _ out: inout [Output]) {
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

    private mutating func sendControl(
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
    private mutating func adoptPath(_ s: Int32) {
        guard sessions[s]!.estimator.smoothed == nil, let source = sessions[s]!.source, let known = paths[source] else { return }
        sessions[s]!.estimator.adopt(known)
    }

    /// An ACK of the transmission sent at `sentAt` (nil when it is no longer
    /// known): the backoff ends, and its round trip is a sample.
    private mutating func measure(_ s: Int32, sentAt: UInt64?, first: UInt64, now: UInt64, _ out: inout [Output]) {
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

    // MARK: - Rooms and follows

    private mutating func room(for roomId: String) -> Int32 {
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

    private mutating func addFollow(_ s: Int32, room: Int32, after seq: UInt64) {
        guard sessions[s] != nil, sessions[s]!.followIndex(room) == nil else { return }
        sessions[s]!.follows.append(RoomFollow(room: room, after: seq))
        followers[room, default: []].insert(s)
    }

    private mutating func removeFollow(_ s: Int32, room: Int32) {
        guard sessions[s] != nil, let f = sessions[s]!.followIndex(room) else { return }
        sessions[s]!.follows.remove(at: f)
        followers[room]?.remove(s)
    }

    private mutating func removeFromUser(_ user: String, _ s: Int32) {
        byUser[user]?.removeAll { $0 == s }
        if byUser[user]?.isEmpty == true { byUser[user] = nil }
    }

    private mutating func addToUser(_ user: String, _ s: Int32) {
        if byUser[user]?.contains(s) != true { byUser[user, default: []].append(s) }
    }
}
