/// A token bucket: `burst` at once, refilled at `rate` a second. Pure.
public struct TokenBucket: Sendable {
    public private(set) var tokens: Double
    public private(set) var updated: UInt64

    /// A full bucket at `now` (monotonic nanoseconds).
    public init(full burst: Double, at now: UInt64) {
        tokens = burst
        updated = now
    }

    /// The bucket as of `now`, refilled at `rate` up to `burst`.
    public func refilled(rate: Double, burst: Double, now: UInt64) -> TokenBucket {
        var bucket = self
        bucket.tokens = min(burst, tokens + Double(now &- updated) / 1e9 * rate)
        bucket.updated = now
        return bucket
    }

    /// Takes one token at `now`; false when none is left (and then takes nothing).
    public mutating func take(rate: Double, burst: Double, now: UInt64) -> Bool {
        self = refilled(rate: rate, burst: burst, now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// Per-source token buckets for unauthenticated work (handshakes, error
/// replies): each source address may spend `burst` at once and `rate` per
/// second after that. Memory is bounded: beyond `capacity` sources, the ones
/// whose buckets are full again are forgotten first (they lose nothing),
/// then the longest idle, down to nine tenths of the capacity at once, so a
/// flood from ever new (spoofed) sources costs amortised constant time per
/// datagram. Pure; not thread-safe.
public struct SourceLimiter<Source: Hashable & Sendable>: Sendable {
    public let rate: Double
    public let burst: Double
    public let capacity: Int
    private var buckets: [Source: TokenBucket] = [:]

    public init(rate: Double, burst: Double, capacity: Int = 65_536) {
        precondition(rate > 0 && burst >= 1 && capacity >= 1)
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
    }

    /// Sources tracked now.
    public var count: Int { buckets.count }

    /// Takes one token for `source` at `now` (monotonic nanoseconds);
    /// false when it has none left (and then takes nothing).
    public mutating func allow(_ source: Source, now: UInt64) -> Bool {
        var bucket = buckets[source] ?? TokenBucket(full: burst, at: now)
        let allowed = bucket.take(rate: rate, burst: burst, now: now)
        buckets[source] = bucket
        if allowed && buckets.count > capacity { prune(now: now) }
        return allowed
    }

    private mutating func prune(now: UInt64) {
        let target = capacity * 9 / 10
        buckets = buckets.filter { $0.value.refilled(rate: rate, burst: burst, now: now).tokens < burst }
        if buckets.count > target {
            let idle = buckets.sorted { $0.value.updated < $1.value.updated }.prefix(buckets.count - target)
            for (source, _) in idle { buckets[source] = nil }
        }
    }
}
