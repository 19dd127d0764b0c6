import ChatWire

/// One room's events as the edge holds them: a cache over the store's
/// durable log (docs/architecture.md, "Delivery from durable state"), keyed by
/// the room's sequence number. Each event is encoded once, as the inner
/// JSON every copy shares; a copy adds only its `msg_id`.
///
/// The recent events (the newest ``recentCapacity``, at most
/// ``recentBytes``) serve sessions that keep up; pages read from the store
/// for a session further behind are kept apart, in a bounded cache of their
/// own, so one slow session never pushes out what the others need. Any
/// sequence number up to ``head`` that is in neither can be read from the
/// store, and ``lookup(_:)`` says so.
///
/// A value type with no I/O; not thread-safe.
struct RoomLog {
    /// What an event means for delivery beyond its bytes: whose membership it changes.
    enum Subject: Equatable {
        case none
        /// MEMBER_JOINED: this user's sessions follow the room from here on.
        case joined(userId: String)
        /// MEMBER_LEFT: this user's sessions stop at this event (it is not theirs).
        case left(userId: String)
        /// Sent to nobody (too large for a datagram, or of a kind this edge
        /// does not know): it only fills its place in the sequence.
        case unsendable
    }

    struct Entry {
        let seq: UInt64
        let subject: Subject
        let template: CopyTemplate

        var size: Int { template.size }
    }

    enum Lookup {
        case entry(Entry)
        /// Not in memory: read it from the store.
        case missing
        /// Gone from the store's log too (pruned): skip it.
        case forgotten
        /// Beyond the newest event known.
        case beyondHead
    }

    // Implementation constants.
    /// Recent events kept per room: a session that falls further behind than
    /// this reads pages from the store.
    static let recentCapacity = 1024
    /// And at most this many bytes of them (messages may be up to a datagram).
    static let recentBytes = 2 << 20
    /// Events read from the store for sessions behind the recent ones.
    static let behindCapacity = 2048
    /// Events asked of the store in one read.
    static let pageSize: UInt32 = 256

    let roomId: String
    /// The first 8 bytes of every `msg_id` of this room's copies.
    let key: UInt64
    /// The newest sequence number known to exist (0: none known yet).
    private(set) var head: UInt64 = 0
    /// The room is closed: no event will follow ``head``.
    var closed = false
    private var recent: [UInt64: Entry] = [:]
    private var recentLow: UInt64 = 1
    private var recentSize = 0
    private var behind: [UInt64: Entry] = [:]
    /// Events up to here are gone from the store's log as well.
    private(set) var forgottenThrough: UInt64 = 0

    init(roomId: String) {
        self.roomId = roomId
        self.key = MessageIdentifier.roomKey(roomId)
    }

    var recentCount: Int { recent.count }
    var behindCount: Int { behind.count }

    func lookup(_ seq: UInt64) -> Lookup {
        if seq > head { return .beyondHead }
        if let entry = recent[seq] ?? behind[seq] { return .entry(entry) }
        return seq <= forgottenThrough ? .forgotten : .missing
    }

    /// The store's log no longer holds events up to `seq` (they were pruned).
    mutating func forget(through seq: UInt64) {
        forgottenThrough = max(forgottenThrough, seq)
    }

    /// A newer sequence number exists (a live event, or a read's head).
    mutating func advanceHead(to seq: UInt64) {
        guard seq > head else { return }
        head = seq
        evictRecent()
    }

    /// Lets go of the events up to `seq`, which every follower has had:
    /// an idle room then holds nothing, and one that is needed again is read
    /// from the store (``lookup(_:)`` says `.missing`).
    mutating func release(through seq: UInt64) {
        guard seq >= recentLow || !behind.isEmpty else { return }
        for (key, entry) in recent where key <= seq {
            recent[key] = nil
            recentSize -= entry.size
        }
        for key in behind.keys where key <= seq { behind[key] = nil }
        if seq >= recentLow { recentLow = min(seq + 1, head + 1) }
        // Emptied dictionaries keep their storage until replaced.
        if recent.isEmpty { recent = [:] }
        if behind.isEmpty { behind = [:] }
    }

    /// Adds an event, live or read from the store; a duplicate changes nothing.
    /// Returns whether it was new here.
    @discardableResult
    mutating func insert(_ entry: Entry) -> Bool {
        advanceHead(to: entry.seq)
        guard recent[entry.seq] == nil, behind[entry.seq] == nil else { return false }
        if isRecent(entry.seq) {
            recent[entry.seq] = entry
            recentSize += entry.size
            if entry.seq < recentLow { recentLow = entry.seq }
            evictRecent()
        } else {
            if behind.count >= Self.behindCapacity {
                // Thrash-free enough: the page being read now is kept whole.
                behind.removeAll(keepingCapacity: true)
            }
            behind[entry.seq] = entry
        }
        return true
    }

    private func isRecent(_ seq: UInt64) -> Bool {
        seq + UInt64(Self.recentCapacity) > head
    }

    /// Drops recent events that are no longer among the newest, or that
    /// exceed the byte budget, oldest first.
    private mutating func evictRecent() {
        let cutoff = head > UInt64(Self.recentCapacity) ? head - UInt64(Self.recentCapacity) : 0
        if cutoff >= recentLow && cutoff - recentLow > UInt64(recent.count) {
            // Far behind the head: sweep the few entries rather than the numbers between.
            for (seq, entry) in recent where seq <= cutoff {
                recent[seq] = nil
                recentSize -= entry.size
            }
            recentLow = cutoff + 1
        }
        while !recent.isEmpty, recentLow <= head,
            !isRecent(recentLow) || recentSize > Self.recentBytes
        {
            if let gone = recent.removeValue(forKey: recentLow) { recentSize -= gone.size }
            recentLow += 1
        }
        if recent.isEmpty { recentLow = head + 1 }
    }
}
