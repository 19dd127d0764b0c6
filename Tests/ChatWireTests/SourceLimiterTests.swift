import ChatWire
import Testing

/// Per-source token buckets on virtual time.
@Suite struct SourceLimiterTests {
    static let second: UInt64 = 1_000_000_000

    @Test func aSourceSpendsItsBurstThenItsRateAndOthersAreUntouched() {
        var limiter = SourceLimiter<String>(rate: 2, burst: 3)
        let answers = [
            limiter.allow("a", now: 0), limiter.allow("a", now: 0), limiter.allow("a", now: 0), limiter.allow("a", now: 0),
            limiter.allow("b", now: 0),  // another source has its own bucket
            limiter.allow("a", now: Self.second / 4),  // half a token after 250 ms
            limiter.allow("a", now: Self.second / 2),  // one token after 500 ms at 2 a second
            limiter.allow("a", now: Self.second / 2),
        ]
        #expect(answers == [true, true, true, false, true, false, true, false])
    }

    @Test func aRefusalTakesNothing() {
        var limiter = SourceLimiter<String>(rate: 1, burst: 1)
        let first = limiter.allow("a", now: 0)
        let refused = (1...10).map { limiter.allow("a", now: UInt64($0) * Self.second / 20) }
        let afterASecond = limiter.allow("a", now: Self.second)
        #expect(first && refused.allSatisfy { !$0 })
        #expect(afterASecond, "refused attempts did not push the refill back")
    }

    @Test func aBucketNeverHoldsMoreThanItsBurst() {
        var limiter = SourceLimiter<String>(rate: 10, burst: 2)
        _ = limiter.allow("a", now: 0)
        let later = 3600 * Self.second
        let answers = [limiter.allow("a", now: later), limiter.allow("a", now: later), limiter.allow("a", now: later)]
        #expect(answers == [true, true, false])
    }

    @Test func aFloodOfNewSourcesStaysWithinTheCapacity() {
        var limiter = SourceLimiter<Int>(rate: 1, burst: 2, capacity: 100)
        for source in 1...10_000 { _ = limiter.allow(source, now: UInt64(source)) }
        #expect(limiter.count <= 100 && limiter.count >= 90)
    }

    @Test func sourcesWhoseBucketsAreFullAgainAreForgottenFirst() {
        var limiter = SourceLimiter<Int>(rate: 1, burst: 2, capacity: 100)
        for source in 1...100 { _ = limiter.allow(source, now: 0) }
        // Ten seconds on, those buckets are full again; source 0 spends its own.
        let tenSeconds = 10 * Self.second
        let spent = [limiter.allow(0, now: tenSeconds), limiter.allow(0, now: tenSeconds)]
        _ = limiter.allow(101, now: tenSeconds)
        let afterPruning = limiter.allow(0, now: tenSeconds)
        #expect(spent == [true, true] && limiter.count == 2, "the full buckets went, source 0 and 101 stayed")
        #expect(!afterPruning, "source 0's spent bucket was kept: forgetting it would have given it a new burst")
    }
}
