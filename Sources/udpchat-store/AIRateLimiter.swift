import Common

/// Per-user and per-room limits on AI requests: token buckets that hold a
/// minute's allowance and refill continuously. Not thread-safe.
struct AIRateLimiter {
    struct Bucket {
        var tokens: Double
        var updated: UInt64
    }

    let perUserPerMinute: Int
    let perRoomPerMinute: Int
    private var users: [String: Bucket] = [:]
    private var rooms: [String: Bucket] = [:]

    /// Implementation constant: buckets kept before full ones are forgotten.
    static let pruneAbove = 10_000

    init(perUserPerMinute: Int, perRoomPerMinute: Int) {
        self.perUserPerMinute = perUserPerMinute
        self.perRoomPerMinute = perRoomPerMinute
    }

    /// Takes one request for `user` in `room` at `now` (monotonic
    /// nanoseconds); returns the error text when either limit is reached,
    /// and then takes nothing.
    mutating func admit(user: String, room: String, now: UInt64) -> String? {
        var userBucket = Self.refilled(users[user], rate: perUserPerMinute, now: now)
        var roomBucket = Self.refilled(rooms[room], rate: perRoomPerMinute, now: now)
        guard userBucket.tokens >= 1 else {
            return ProtocolText.aiFailed("you have made \(perUserPerMinute) AI requests in the last minute; try again shortly.")
        }
        guard roomBucket.tokens >= 1 else {
            return ProtocolText.aiFailed("this room has had \(perRoomPerMinute) AI requests in the last minute; try again shortly.")
        }
        userBucket.tokens -= 1
        roomBucket.tokens -= 1
        users[user] = userBucket
        rooms[room] = roomBucket
        if users.count > Self.pruneAbove { users = Self.pruned(users, rate: perUserPerMinute, now: now) }
        if rooms.count > Self.pruneAbove { rooms = Self.pruned(rooms, rate: perRoomPerMinute, now: now) }
        return nil
    }

    private static func refilled(_ bucket: Bucket?, rate: Int, now: UInt64) -> Bucket {
        let capacity = Double(rate)
        guard let bucket else { return Bucket(tokens: capacity, updated: now) }
        let elapsedMinutes = Double(now &- bucket.updated) / 60e9
        return Bucket(tokens: min(capacity, bucket.tokens + elapsedMinutes * capacity), updated: now)
    }

    /// Forgets the buckets that have refilled completely (no information lost).
    private static func pruned(_ buckets: [String: Bucket], rate: Int, now: UInt64) -> [String: Bucket] {
        buckets.filter { refilled($0.value, rate: rate, now: now).tokens < Double(rate) }
    }
}
