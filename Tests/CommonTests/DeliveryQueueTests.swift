import Common
import Testing

@Suite struct DeliveryQueueTests {
    static let ms: UInt64 = 1_000_000
    static let second: UInt64 = 1_000_000_000
    typealias Queue = DeliveryQueue<String>

    static func sent(_ actions: [Queue.Action]) -> [String] {
        actions.compactMap { if case .send(let copy) = $0 { return copy.msgId } else { return nil } }
    }

    /// Runs the queue's timers until nothing is due before `end`; returns every send.
    static func run(_ queue: inout Queue, until end: UInt64) -> [(time: UInt64, action: Queue.Action)] {
        var log: [(UInt64, Queue.Action)] = []
        while let due = queue.nextDeadline(), due <= end {
            for action in queue.due(now: due) { log.append((due, action)) }
        }
        return log
    }

    @Test func fixedTimingIsTheOriginals() {
        var queue = Queue(timing: .fixed(interval: 2 * Self.second, transmissions: 5))
        #expect(Self.sent(queue.submit(session: "s", msgId: "m", stream: nil, payload: "p", now: 0)) == ["m"])
        let log = Self.run(&queue, until: 60 * Self.second)
        // PROTOCOL.md §6.2: five transmissions in all, about 2, 4, 6 and 8 s after the first.
        let seconds: [UInt64] = log.compactMap { if case .send = $0.action { return $0.time / Self.second } else { return nil } }
        #expect(seconds == [2, 4, 6, 8])
        #expect(queue.count == 0 && !queue.isUnreachable("s"))
    }

    @Test func adaptiveTimingBacksOffFromTheMeasuredRTO() {
        var queue = Queue(timing: .adaptive(budget: 60 * Self.second))
        // Two acknowledged copies teach the queue a 10 ms round trip.
        _ = queue.submit(session: "s", msgId: "a", stream: nil, payload: "p", now: 0)
        _ = queue.acknowledge(session: "s", msgId: "a", now: 10 * Self.ms)
        _ = queue.submit(session: "s", msgId: "b", stream: nil, payload: "p", now: 20 * Self.ms)
        _ = queue.acknowledge(session: "s", msgId: "b", now: 30 * Self.ms)
        #expect(queue.rto(for: "s") == RTTEstimator.minimumRTO)
        _ = queue.submit(session: "s", msgId: "c", stream: nil, payload: "p", now: Self.second)
        let times = Self.run(&queue, until: 6 * Self.second).compactMap { entry -> UInt64? in
            if case .send = entry.action { return (entry.time - Self.second) / Self.ms } else { return nil }
        }
        // 200 ms, then doubling up to the 2 s cap: 200, 600, 1400, 3000, 5000 ms after the first send.
        #expect(times == [200, 600, 1400, 3000, 5000])
    }

    @Test func karnsRuleIgnoresRetransmittedCopies() {
        var queue = Queue(timing: .adaptive(budget: 60 * Self.second))
        _ = queue.submit(session: "s", msgId: "a", stream: nil, payload: "p", now: 0)
        _ = queue.due(now: RTTEstimator.initialRTO)  // retransmitted once
        _ = queue.acknowledge(session: "s", msgId: "a", now: RTTEstimator.initialRTO + 5 * Self.ms)
        #expect(queue.rto(for: "s") == RTTEstimator.initialRTO)  // no sample taken
    }

    @Test func aSessionOutOfBudgetIsUnreachableUntilItSpeaks() {
        var queue = Queue(timing: .adaptive(budget: 10 * Self.second))
        _ = queue.submit(session: "s", msgId: "a", stream: nil, payload: "p", now: 0)
        _ = queue.submit(session: "s", msgId: "b", stream: nil, payload: "p", now: 0)
        let log = Self.run(&queue, until: 20 * Self.second)
        let unreachable = log.compactMap { entry -> Int? in
            if case .unreachable(_, let dropped) = entry.action { return dropped } else { return nil }
        }
        #expect(unreachable == [2] && log.allSatisfy { $0.time <= 10 * Self.second })
        #expect(queue.isUnreachable("s") && queue.count == 0)
        #expect(queue.submit(session: "s", msgId: "c", stream: nil, payload: "p", now: 21 * Self.second).isEmpty)
        queue.heard(from: "s")
        #expect(Self.sent(queue.submit(session: "s", msgId: "d", stream: nil, payload: "p", now: 22 * Self.second)) == ["d"])
    }

    @Test func aStreamWaitsForEachAcknowledgementOnceTheSessionAcknowledges() {
        var queue = Queue(timing: .adaptive(budget: 60 * Self.second))
        // A session that has never acknowledged is not held back.
        #expect(Self.sent(queue.submit(session: "s", msgId: "1", stream: "room", payload: "p", now: 0)) == ["1"])
        #expect(Self.sent(queue.submit(session: "s", msgId: "2", stream: "room", payload: "p", now: 1)) == ["2"])
        _ = queue.acknowledge(session: "s", msgId: "1", now: 2)
        _ = queue.acknowledge(session: "s", msgId: "2", now: 3)
        // Now it acknowledges: one copy of the stream at a time, in order.
        #expect(Self.sent(queue.submit(session: "s", msgId: "3", stream: "room", payload: "p", now: 10)) == ["3"])
        #expect(queue.submit(session: "s", msgId: "4", stream: "room", payload: "p", now: 11).isEmpty)
        #expect(queue.submit(session: "s", msgId: "5", stream: "room", payload: "p", now: 12).isEmpty)
        // Another stream and unordered copies are not held back.
        #expect(Self.sent(queue.submit(session: "s", msgId: "x", stream: "other", payload: "p", now: 13)) == ["x"])
        #expect(Self.sent(queue.submit(session: "s", msgId: "y", stream: nil, payload: "p", now: 14)) == ["y"])
        // A retransmission of the head does not release the next.
        #expect(Self.sent(queue.due(now: Self.second)).contains("3"))
        #expect(Self.sent(queue.acknowledge(session: "s", msgId: "3", now: Self.second + 1)) == ["4"])
        #expect(Self.sent(queue.acknowledge(session: "s", msgId: "4", now: Self.second + 2)) == ["5"])
        #expect(Self.sent(queue.acknowledge(session: "s", msgId: "5", now: Self.second + 3)).isEmpty)
    }

    /// Copies sent before the session first acknowledged are in flight
    /// together; their late ACKs must not release the stream's queue.
    @Test func lateAcknowledgementsOfEarlierCopiesDoNotReleaseTheStream() {
        var queue = Queue(timing: .adaptive(budget: 60 * Self.second))
        for id in ["1", "2", "3"] { _ = queue.submit(session: "s", msgId: id, stream: "room", payload: "p", now: 0) }
        _ = queue.acknowledge(session: "s", msgId: "1", now: 1)
        #expect(Self.sent(queue.submit(session: "s", msgId: "4", stream: "room", payload: "p", now: 2)) == ["4"])
        #expect(queue.submit(session: "s", msgId: "5", stream: "room", payload: "p", now: 3).isEmpty)
        #expect(Self.sent(queue.acknowledge(session: "s", msgId: "2", now: 4)).isEmpty)  // not the head: 5 still waits
        #expect(Self.sent(queue.acknowledge(session: "s", msgId: "3", now: 5)).isEmpty)
        #expect(Self.sent(queue.acknowledge(session: "s", msgId: "4", now: 6)) == ["5"])
    }

    @Test func anAcknowledgementFromAnotherSessionChangesNothing() {
        var queue = Queue(timing: .fixed(interval: Self.second, transmissions: 5))
        _ = queue.submit(session: "a", msgId: "m", stream: nil, payload: "p", now: 0)
        _ = queue.acknowledge(session: "b", msgId: "m", now: 1)
        #expect(queue.pending(for: "a") == 1)
        _ = queue.acknowledge(session: "a", msgId: "m", now: 2)
        #expect(queue.pending(for: "a") == 0 && queue.nextDeadline() == nil)
    }

    @Test func theBoundDropsTheOldestCopyAndLetsItsStreamMoveOn() {
        var queue = Queue(timing: .adaptive(budget: 60 * Self.second), perSessionLimit: 2)
        _ = queue.submit(session: "s", msgId: "0", stream: nil, payload: "p", now: 0)
        _ = queue.acknowledge(session: "s", msgId: "0", now: 1)
        _ = queue.submit(session: "s", msgId: "1", stream: "room", payload: "p", now: 2)
        _ = queue.submit(session: "s", msgId: "2", stream: "room", payload: "p", now: 3)
        // "1" in flight, "2" waiting; a third copy drops "1", which releases "2".
        let actions = queue.submit(session: "s", msgId: "3", stream: nil, payload: "p", now: 4)
        #expect(Self.sent(actions) == ["2", "3"] && queue.pending(for: "s") == 2)
    }

    @Test func removingASessionForgetsItsCopies() {
        var queue = Queue(timing: .fixed(interval: Self.second, transmissions: 5))
        _ = queue.submit(session: "a", msgId: "1", stream: nil, payload: "p", now: 0)
        _ = queue.submit(session: "b", msgId: "2", stream: nil, payload: "p", now: 0)
        queue.remove(session: "a")
        #expect(queue.count == 1 && Self.sent(queue.due(now: Self.second)) == ["2"])
    }
}

@Suite struct RTTEstimatorTests {
    @Test func followsRFC6298() {
        var estimator = RTTEstimator()
        #expect(estimator.rto == 1_000_000_000)
        estimator.sample(400_000_000)  // SRTT 400, RTTVAR 200: RTO = 400 + 800 ms
        #expect(estimator.smoothed == 400_000_000 && estimator.variance == 200_000_000 && estimator.rto == 1_200_000_000)
        estimator.sample(200_000_000)  // RTTVAR = 3/4·200 + 1/4·200 = 200; SRTT = 7/8·400 + 1/8·200 = 375
        #expect(estimator.smoothed == 375_000_000 && estimator.variance == 200_000_000)
        for _ in 0..<50 { estimator.sample(1_000_000) }
        #expect(estimator.rto == RTTEstimator.minimumRTO)
        #expect(estimator.rto(afterTransmissions: 1) == 200_000_000 && estimator.rto(afterTransmissions: 3) == 800_000_000)
        #expect(estimator.rto(afterTransmissions: 20) == RTTEstimator.maximumRTO)
    }
}
