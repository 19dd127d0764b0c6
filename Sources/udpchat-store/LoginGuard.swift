
/// Password guesses, per account and per source (the client's IP address,
/// an IPv6 address by its /64): after `limit` failed attempts within
/// `window` from one source, that source may not try the account again
/// until the window has passed since the first; the owner, elsewhere, is
/// not locked out. An attempt counts from the moment it is admitted, before
/// its password is hashed, so parallel guesses cannot all slip past the
/// check. The table is bounded: past `capacity` entries, expired ones go,
/// then the oldest. In memory; time passed in; not thread-safe.
struct LoginGuard {
    struct Key: Hashable {
        var account: String
        var source: String
    }

    private struct Entry {
        var failures = 0
        var inFlight = 0
        var since: UInt64
    }

    let limit: Int
    let window: UInt64
    let capacity: Int
    private var entries: [Key: Entry] = [:]

    init(limit: Int, window: UInt64, capacity: Int = 100_000) {
        self.limit = limit
        self.window = window
        self.capacity = capacity
    }

    var count: Int { entries.count }

    /// Admits an attempt (nil), or says how many seconds to wait. An
    /// admitted attempt must be finished with ``finish(_:failed:now:)``.
    mutating func begin(_ key: Key, now: UInt64) -> Int? {
        var entry = entries[key] ?? Entry(since: now)
        if entry.inFlight == 0, now &- entry.since >= window { entry = Entry(since: now) }
        if entry.failures + entry.inFlight >= limit {
            entries[key] = entry
            return Int((window - min(window, now &- entry.since)) / 1_000_000_000) + 1
        }
        entry.inFlight += 1
        entries[key] = entry
        bound(now: now)
        return nil
    }

    /// An admitted attempt ended: `failed` true for a wrong password, false
    /// for a login, nil when the password was never judged (the server was
    /// busy, or no password was given).
    mutating func finish(_ key: Key, failed: Bool?, now: UInt64) {
        guard var entry = entries[key] else { return }
        entry.inFlight = max(0, entry.inFlight - 1)
        switch failed {
        case true?: entry.failures += 1
        case false?: entry.failures = 0
        case nil: break
        }
        if entry.failures == 0 && entry.inFlight == 0 {
            entries[key] = nil
        } else {
            entries[key] = entry
        }
    }

    private mutating func bound(now: UInt64) {
        guard entries.count > capacity else { return }
        entries = entries.filter { $0.value.inFlight > 0 || now &- $0.value.since < window }
        guard entries.count > capacity else { return }
        // Still full of live entries (a spray of guesses): the oldest go, down to nine tenths.
        let keep = capacity * 9 / 10
        let oldest = entries.filter { $0.value.inFlight == 0 }.sorted { $0.value.since < $1.value.since }
        for (key, _) in oldest.prefix(max(0, entries.count - keep)) { entries[key] = nil }
    }
}
