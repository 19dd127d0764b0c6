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

    // The engine's state, kept by its three files (this one, +Sending and
    // +Timers). Outside the engine it is read, never written: callers go
    // through the methods.
    var rooms: [Int32: RoomLog] = [:]
    var roomIndex: [String: Int32] = [:]
    var roomByKey: [UInt64: Int32] = [:]
    var followers: [Int32: Set<Int32>] = [:]
    var nextRoom: Int32 = 0
    var sessions: [Int32: SessionDelivery] = [:]
    /// A user's sessions here (few: an array costs less than a set).
    var byUser: [String: [Int32]] = [:]
    var deadlines = Heap<Deadline>()
    var readRetries: [(room: Int32, at: UInt64)] = []
    /// Reads of the store under way per room: the first sequence number each asked for.
    var reads: [Int32: [UInt64]] = [:]
    var latestRoomList: CopyTemplate?
    var roomListVersion: UInt64 = 0
    /// The round trip last measured from each source address, for sessions
    /// that start there (``RTTEstimator/adopt(_:)``); bounded.
    var paths: [String: RTTEstimator] = [:]

    /// Implementation constant: sources whose round trip is remembered.
    static let pathCapacity = 16_384
    /// Shutting down: copies on their way may still be confirmed, nothing new is sent.
    var draining = false

    struct Deadline: Comparable {
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

    mutating func sendNewestRoomList(_ s: Int32, now: UInt64, _ out: inout [Output]) {
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
}
