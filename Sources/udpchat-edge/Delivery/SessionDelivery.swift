import ChatWire

/// Where one session's delivery stands: a cursor per room it follows and
/// the few copies on their way to it, never a queue of copies. Memory per
/// session stays the same however far behind it falls; what it has not
/// received yet is in the room logs (and, further back, in the store).
struct SessionDelivery {
    /// Mixed into the ids of its copies of room events (``MessageIdentifier``);
    /// changed when the session is given up as unreachable, so an ACK of a
    /// copy sent before then cannot pass for one of the copies sent after.
    var salt: UInt64
    /// Its source address (the IP), whose round trips new sessions from it start with.
    var source: String?
    /// The logged-in user (events of rooms follow the user's membership).
    var userId: String?
    /// The session has acknowledged a copy: its rooms' events go to it one
    /// at a time, each after the previous one's ACK, so a client that shows
    /// messages in arrival order shows them in commit order (docs/protocol.md
    /// §6.4 has no order; docs/architecture.md "Order and exactly-once display").
    var acknowledges: Bool
    /// Proved itself on this edge (a packet passed its tag, or it was
    /// loaded from the store with the address it last used).
    var active: Bool
    /// Its copies ran out of retry budget: nothing is sent until it speaks.
    var unreachable = false
    /// Monotonic time of its last authenticated packet.
    var lastHeard: UInt64
    var estimator = RTTEstimator()
    var follows: [RoomFollow] = []
    /// Copies outside the rooms' sequences (room lists, notices), each sent
    /// until acknowledged; a room list replaces an older one.
    var control: [ControlCopy] = []
    /// `acknowledges` is what the store last heard.
    var acknowledgesReported = false
    /// The room list it was last sent (a version), so a session that comes
    /// back from silence gets the newest one it missed.
    var roomListVersion: UInt64 = 0

    init(salt: UInt64, userId: String?, acknowledges: Bool, active: Bool, lastHeard: UInt64) {
        self.salt = salt
        self.userId = userId
        self.acknowledges = acknowledges
        self.acknowledgesReported = acknowledges
        self.active = active
        self.lastHeard = lastHeard
    }

    func followIndex(_ room: Int32) -> Int? { follows.firstIndex { $0.room == room } }

    /// Lets go of the storage of lists that emptied (an idle session keeps
    /// none: `remove(at:)` keeps an array's capacity).
    mutating func releaseEmptyStorage() {
        if control.isEmpty && control.capacity > 0 { control = [] }
        for f in follows.indices where follows[f].inFlight.isEmpty && follows[f].inFlight.capacity > 0 {
            follows[f].inFlight = []
        }
    }

    /// Copies on their way, in all.
    var inFlight: Int { follows.reduce(control.count) { $0 + $1.inFlight.count } }
}

/// A session's place in one room's events.
struct RoomFollow {
    let room: Int32
    /// Every event up to here was acknowledged, given up on, or not the
    /// session's (the cursor the store keeps).
    var delivered: UInt64
    /// Every event up to here was sent or skipped.
    var sent: UInt64
    /// The session's user is a member at `sent`: the user's own MEMBER_LEFT
    /// clears it (later events are not theirs) and MEMBER_JOINED sets it.
    var member = true
    /// Copies sent and not yet acknowledged, oldest first (one at a time for
    /// a session that acknowledges).
    var inFlight: [InFlightCopy] = []
    /// The cursor as last reported to the store.
    var reported: UInt64

    init(room: Int32, after seq: UInt64) {
        self.room = room
        delivered = seq
        sent = seq
        reported = seq
    }

    /// Moves `delivered` up to just before the oldest copy still on its way.
    mutating func settle() {
        delivered = inFlight.first.map { $0.seq - 1 } ?? sent
    }

    /// Forgets the copies on their way from `seq` on, to send them again:
    /// `sent` and `member` go back to what they were just before `seq`.
    mutating func rewind(to seq: UInt64) {
        guard let first = inFlight.firstIndex(where: { $0.seq >= seq }) else { return }
        member = inFlight[first].memberBefore
        inFlight.removeSubrange(first...)
        sent = seq - 1
        settle()
    }
}

/// A copy on its way: when it was first and last sent, and when it is due again.
struct InFlightCopy {
    let seq: UInt64
    var firstSent: UInt64
    var lastSent: UInt64
    var transmissions: Int
    var due: UInt64
    /// The follow's `member` before this event: what it is again if
    /// delivery rewinds to just before it.
    var memberBefore = true
    /// When its latest transmissions went out, for the round trip of the one an ACK names.
    var sent = SendTimes()
}

/// The times of a copy's latest four transmissions, by number.
struct SendTimes {
    private var times: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    mutating func record(_ transmission: Int, at time: UInt64) {
        switch transmission & 3 {
        case 0: times.0 = time
        case 1: times.1 = time
        case 2: times.2 = time
        default: times.3 = time
        }
    }

    /// When transmission `transmission` went out, if it is one of the latest four of `latest`.
    func time(of transmission: Int, latest: Int) -> UInt64? {
        guard transmission >= 1, transmission <= latest, transmission > latest - 4 else { return nil }
        switch transmission & 3 {
        case 0: return times.0
        case 1: return times.1
        case 2: return times.2
        default: return times.3
        }
    }
}

/// A copy of a broadcast outside the rooms' sequences.
struct ControlCopy {
    enum Kind: Equatable {
        case roomList
        /// ROOM_JOINED, ROOM_LEFT or a late ERROR.
        case notice
    }

    var msgId: MessageIdentifier
    var template: CopyTemplate
    var kind: Kind
    var firstSent: UInt64
    var lastSent: UInt64
    var transmissions: Int
    var due: UInt64
    var sent = SendTimes()
}
