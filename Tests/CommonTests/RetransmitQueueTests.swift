import Common
import Testing

@Suite struct RetransmitQueueTests {
    static let second: UInt64 = 1_000_000_000

    @Test func resendsEveryIntervalThenExpiresAfterFiveTransmissions() {
        var queue = RetransmitQueue<String, String>(intervalNanoseconds: 2 * Self.second, transmissions: 5)
        queue.sent(session: "s", msgId: "m", payload: "p", now: 0)
        #expect(queue.nextDeadline() == 2 * Self.second)
        #expect(queue.due(now: 2 * Self.second - 1).isEmpty)
        var sends = 1
        var time: UInt64 = 0
        var expired = false
        while let due = queue.nextDeadline() {
            time = due
            for action in queue.due(now: time) {
                switch action {
                case .resend(let copy):
                    sends += 1
                    #expect(copy.transmissions == sends && copy.payload == "p")
                case .expired(let copy):
                    expired = true
                    #expect(copy.msgId == "m")
                }
            }
        }
        // PROTOCOL.md §6.2: 5 transmissions in all, about 2, 4, 6 and 8 s after the first.
        #expect(sends == 5 && expired && time == 10 * Self.second && queue.count == 0)
    }

    @Test func anAckStopsRetransmissionOnlyForItsOwnSession() {
        var queue = RetransmitQueue<String, Int>(intervalNanoseconds: Self.second, transmissions: 5)
        queue.sent(session: "a", msgId: "m1", payload: 1, now: 0)
        queue.sent(session: "b", msgId: "m2", payload: 2, now: 0)
        let wrongSession = queue.acknowledge(session: "b", msgId: "m1")
        let first = queue.acknowledge(session: "a", msgId: "m1")
        let second = queue.acknowledge(session: "a", msgId: "m1")
        #expect(!wrongSession && first && !second)
        let actions = queue.due(now: Self.second)
        #expect(actions.count == 1)
        if case .resend(let copy) = actions.first { #expect(copy.msgId == "m2") } else { Issue.record("expected a resend") }
    }

    @Test func perSessionLimitDisplacesTheOldestCopy() {
        var queue = RetransmitQueue<String, Int>(intervalNanoseconds: Self.second, transmissions: 5, perSessionLimit: 2)
        let first = queue.sent(session: "a", msgId: "1", payload: 1, now: 0)
        let second = queue.sent(session: "a", msgId: "2", payload: 2, now: 0)
        let third = queue.sent(session: "a", msgId: "3", payload: 3, now: 0)
        #expect(first == nil && second == nil && third?.msgId == "1")
        #expect(queue.pending(for: "a") == 2 && queue.count == 2)
    }

    @Test func removingASessionForgetsItsCopies() {
        var queue = RetransmitQueue<String, Int>(intervalNanoseconds: Self.second, transmissions: 5)
        queue.sent(session: "a", msgId: "1", payload: 1, now: 0)
        queue.sent(session: "b", msgId: "2", payload: 2, now: 0)
        queue.removeAll(for: "a")
        #expect(queue.count == 1 && queue.due(now: Self.second).count == 1)
    }

    @Test func oneTransmissionMeansNoRetries() {
        var queue = RetransmitQueue<String, Int>(intervalNanoseconds: Self.second, transmissions: 1)
        queue.sent(session: "a", msgId: "1", payload: 1, now: 0)
        #expect(queue.count == 0 && queue.nextDeadline() == nil)
    }
}
