import ChatWire
import Testing

/// The retransmission timeout on virtual time: RFC 6298's smoothing,
/// RFC 9002's granularity instead of a one-second floor, backoff and its end.
@Suite struct RTTEstimatorTests {
    static let ms: UInt64 = 1_000_000

    @Test func beforeAnySampleTheTimeoutIsOneSecond() {
        #expect(RTTEstimator().rto == RTTEstimator.initialRTO)
    }

    @Test func theFirstSampleSetsTheMeanAndHalfOfItAsTheVariation() {
        var rtt = RTTEstimator()
        rtt.sample(40 * Self.ms)
        #expect(rtt.smoothed == 40 * Self.ms && rtt.variance == 20 * Self.ms)
        #expect(rtt.rto == 40 * Self.ms + 4 * 20 * Self.ms)
    }

    @Test func laterSamplesAreSmoothedAnEighthAndAQuarterAtATime() {
        var rtt = RTTEstimator()
        rtt.sample(40 * Self.ms)
        rtt.sample(80 * Self.ms)
        #expect(rtt.smoothed == (7 * 40 + 80) * Self.ms / 8)
        #expect(rtt.variance == (3 * 20 + 40) * Self.ms / 4)
    }

    @Test func aSteadyPathKeepsOnlyTheGranularityAsSlack() {
        var rtt = RTTEstimator()
        for _ in 0..<200 { rtt.sample(10 * Self.ms) }
        #expect(rtt.variance < RTTEstimator.granularity / 4)
        #expect(rtt.rto == 10 * Self.ms + RTTEstimator.granularity)
    }

    @Test func timeoutsDoubleUpToTheCeilingAndAnAcknowledgementEndsTheBackoff() {
        var rtt = RTTEstimator()
        rtt.sample(100 * Self.ms)
        let base = rtt.rto
        rtt.timedOut()
        #expect(rtt.rto == 2 * base)
        for _ in 0..<50 { rtt.timedOut() }
        #expect(rtt.rto == RTTEstimator.maximumRTO)
        rtt.acknowledged()
        #expect(rtt.rto == base && rtt.backoff == 0)
    }

    @Test func aNewEstimatorAdoptsAnotherOnesRoundTripButNotOverItsOwn() {
        var measured = RTTEstimator()
        measured.sample(30 * Self.ms)
        var fresh = RTTEstimator()
        fresh.timedOut()
        fresh.adopt(measured)
        #expect(fresh.smoothed == measured.smoothed && fresh.backoff == 1)
        var own = RTTEstimator()
        own.sample(5 * Self.ms)
        own.adopt(measured)
        #expect(own.smoothed == 5 * Self.ms)
    }
}
