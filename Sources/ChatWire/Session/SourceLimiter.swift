/// Per-source token buckets for unauthenticated work (handshakes, error
/// replies): each source address may spend `burst` at once and `rate` per
/// second after that. Memory is bounded: beyond `capacity` sources, the ones
/// whose buckets are full again are forgotten first (they lose nothing),
/// then the longest idle, down to nine tenths of the capacity at once, so a
/// flood from ever new (spoofed) sources costs amortised constant time per
/// datagram. Pure; not thread-safe.
public struct SourceLimiter<Source: Hashable & Sendable>: Sendable {
    private struct Bucket: Sendable {
        var tokens: Double
        var updated: UInt64
    }

    public let rate: Double
    public let burst: Double
    public let capacity: Int
    private var buckets: [Source: Bucket] = [:]

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
        var bucket = refilled(buckets[source], now: now)
        guard bucket.tokens >= 1 else {
            buckets[source] = bucket
            return false
        }
        bucket.tokens -= 1
        buckets[source] = bucket
        if buckets.count > capacity { prune(now: now) }
        return true
    }

    private func refilled(_ bucket: Bucket?, now: UInt64) -> Bucket {
        guard let bucket else { return Bucket(tokens: burst, updated: now) }
        let elapsed = Double(now &- bucket.updated) / 1e9
        return Bucket(tokens: min(burst, bucket.tokens + elapsed * rate), updated: now)
    }

    private mutating func prune(now: UInt64) {
        let target = capacity * 9 / 10
        buckets = buckets.filter { refilled($0.value, now: now).tokens < burst }
        if buckets.count > target {
            let idle = buckets.sorted { $0.value.updated < $1.value.updated }.prefix(buckets.count - target)
            for (source, _) in idle { buckets[source] = nil }
        }
    }
}
