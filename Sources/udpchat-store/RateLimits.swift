import ChatWire

/// Token buckets per key that hold a minute's allowance and refill
/// continuously: `perMinute` actions in any minute, with no burst beyond
/// that. Not thread-safe.
struct MinuteBuckets {
    struct Bucket {
        var tokens: Double
        var updated: UInt64
    }

    let perMinute: Int
    private var buckets: [String: Bucket] = [:]

    /// Implementation constant: buckets kept before full ones are forgotten.
    static let pruneAbove = 10_000

    init(perMinute: Int) { self.perMinute = perMinute }

    /// Whether `key` has an action left at `now` (monotonic nanoseconds).
    func allows(_ key: String, now: UInt64) -> Bool { refilled(buckets[key], now: now).tokens >= 1 }

    /// Takes one action for `key`; false (and nothing taken) when none is left.
    mutating func take(_ key: String, now: UInt64) -> Bool {
        var bucket = refilled(buckets[key], now: now)
        guard bucket.tokens >= 1 else { return false }
        bucket.tokens -= 1
        buckets[key] = bucket
        if buckets.count > Self.pruneAbove {
            // Forgets the buckets that have refilled completely (no information lost).
            buckets = buckets.filter { refilled($0.value, now: now).tokens < Double(perMinute) }
        }
        return true
    }

    private func refilled(_ bucket: Bucket?, now: UInt64) -> Bucket {
        let capacity = Double(perMinute)
        guard let bucket else { return Bucket(tokens: capacity, updated: now) }
        let elapsedMinutes = Double(now &- bucket.updated) / 60e9
        return Bucket(tokens: min(capacity, bucket.tokens + elapsedMinutes * capacity), updated: now)
    }
}

/// Per-user and per-room limits on AI requests. Not thread-safe.
struct AIRateLimiter {
    private var users: MinuteBuckets
    private var rooms: MinuteBuckets

    init(perUserPerMinute: Int, perRoomPerMinute: Int) {
        users = MinuteBuckets(perMinute: perUserPerMinute)
        rooms = MinuteBuckets(perMinute: perRoomPerMinute)
    }

    /// Takes one request for `user` in `room` at `now` (monotonic
    /// nanoseconds); returns the error text when either limit is reached,
    /// and then takes nothing.
    mutating func admit(user: String, room: String, now: UInt64) -> String? {
        guard users.allows(user, now: now) else {
            return ProtocolText.aiFailed("you have made \(users.perMinute) AI requests in the last minute; try again shortly.")
        }
        guard rooms.allows(room, now: now) else {
            return ProtocolText.aiFailed("this room has had \(rooms.perMinute) AI requests in the last minute; try again shortly.")
        }
        _ = users.take(user, now: now)
        _ = rooms.take(room, now: now)
        return nil
    }
}

/// Per-user limits on the writes that reach every session (a new room's
/// list goes to all of them) or every member of a room (joins and leaves):
/// a user looping on them gets an error instead of making the server send
/// without end. Not thread-safe.
struct WriteLimits {
    private(set) var roomsCreated: MinuteBuckets
    private(set) var membershipChanges: MinuteBuckets

    init(roomsPerMinute: Int = 10, membershipChangesPerMinute: Int = 120) {
        roomsCreated = MinuteBuckets(perMinute: roomsPerMinute)
        membershipChanges = MinuteBuckets(perMinute: membershipChangesPerMinute)
    }

    /// Takes a room creation for `user`; the error text when over the limit.
    mutating func createRoom(user: String, now: UInt64) -> String? {
        roomsCreated.take(user, now: now)
            ? nil : "You have created \(roomsCreated.perMinute) rooms in the last minute; wait a moment and try again."
    }

    /// Takes a join or leave for `user`; the error text when over the limit.
    mutating func changeMembership(user: String, now: UInt64) -> String? {
        membershipChanges.take(user, now: now)
            ? nil
            : "You have joined or left rooms \(membershipChanges.perMinute) times in the last minute; wait a moment and try again."
    }
}
