import ChatWire
import Foundation
import Testing

@testable import udpchat_edge

/// The delivery engine on virtual time: cursors, room logs, ordering,
/// retransmission, recovery from the store and the bounds.
@Suite struct DeliveryEngineTests {
    static let ms: UInt64 = 1_000_000
    static let room = "r0000000000000000000000000000001"

    /// An engine with a clock, and what it asked for.
    struct Harness {
        var engine: DeliveryEngine
        var now: UInt64 = 1_000 * ms
        var out: [DeliveryEngine.Output] = []

        init(timing: DeliveryEngine.Timing = .adaptive(budget: 60_000 * ms), backlog: UInt64 = 2000) {
            var policy = DeliveryEngine.Policy(timing: timing, broadcastIdle: 90_000 * ms)
            policy.maximumBacklog = backlog
            engine = DeliveryEngine(policy: policy)
        }

        mutating func advance(_ duration: UInt64) {
            now += duration
            engine.due(now: now, &out)
        }

        /// The session's own packet arrived (an ACK is one).
        mutating func heard(_ s: Int32) { engine.heard(s, now: now, &out) }

        /// Takes what the engine asked for so far.
        mutating func take() -> [DeliveryEngine.Output] {
            defer { out.removeAll() }
            return out
        }

        /// The sequence numbers sent to `session`, in order, from what was taken.
        static func sent(_ outputs: [DeliveryEngine.Output], to session: Int32, salt: UInt64? = nil) -> [UInt64] {
            outputs.compactMap {
                guard case .send(session, let msgId, let template, _) = $0 else { return nil }
                _ = template
                return msgId.roomEvent(salt: salt ?? MessageIdentifier.salt(sessionId: Harness.id(session))).seq
            }
        }

        /// The copies sent to `session`: each event's sequence number and transmission.
        static func copies(_ outputs: [DeliveryEngine.Output], to session: Int32) -> [(seq: UInt64, transmission: Int)] {
            outputs.compactMap {
                guard case .send(session, let msgId, _, _) = $0 else { return nil }
                let decoded = msgId.roomEvent(salt: MessageIdentifier.salt(sessionId: Harness.id(session)))
                return (decoded.seq, decoded.transmission)
            }
        }

        static func id(_ session: Int32) -> String { String(format: "%032x", Int(session) + 1) }

        mutating func addSession(
            _ s: Int32, user: String? = "alice", acknowledges: Bool = true, follows: [(String, UInt64)] = [(room, 0)]
        ) {
            engine.addSession(
                s, salt: MessageIdentifier.salt(sessionId: Self.id(s)), userId: user, acknowledges: acknowledges, active: true,
                follows: follows, now: now)
        }

        mutating func event(_ seq: UInt64, subject: RoomLog.Subject = .none, recipients: [String] = ["alice"], room: String = room) {
            engine.roomEvent(Self.entry(seq, subject: subject), roomId: room, recipients: recipients, now: now, &out)
        }

        static func entry(_ seq: UInt64, subject: RoomLog.Subject = .none) -> RoomLog.Entry {
            RoomLog.Entry(
                seq: seq, subject: subject,
                template: CopyTemplate(
                    .message(MessageEvent(roomId: room, messageId: Int64(seq), userId: "u", name: "n", content: "m\(seq)", timestamp: 0))))
        }

        /// The session's ACK of transmission `transmission` of event `seq`.
        mutating func ack(_ s: Int32, _ seq: UInt64, transmission: Int = 1, room: String = room, salt: UInt64? = nil) {
            let salt = salt ?? engine.sessions[s]?.salt ?? MessageIdentifier.salt(sessionId: Self.id(s))
            engine.acknowledge(
                s, .roomEvent(roomKey: MessageIdentifier.roomKey(room), seq: seq, salt: salt, transmission: transmission), now: now, &out)
        }
    }

    @Test func anAcknowledgingSessionGetsOneEventAtATimeInCommitOrder() {
        var h = Harness()
        h.addSession(0)
        for seq in UInt64(1)...5 { h.event(seq) }
        #expect(Harness.sent(h.take(), to: 0) == [1])
        for seq in UInt64(1)...5 {
            h.now += 2 * Self.ms
            h.ack(0, seq)
            let next = Harness.sent(h.take(), to: 0)
            #expect(next == (seq < 5 ? [seq + 1] : []), "after the ACK of \(seq)")
        }
        #expect(h.engine.inFlight == 0)
    }

    /// Events every follower has had leave memory at the next prune; one
    /// a follower still lacks stays, and a released one is read back from
    /// the store when a session needs it after all.
    @Test func eventsEveryFollowerHasHadLeaveMemory() {
        var h = Harness()
        h.addSession(0)
        h.addSession(1, user: "bob")
        for seq in UInt64(1)...3 { h.event(seq, recipients: ["alice", "bob"]) }
        _ = h.take()
        for seq in UInt64(1)...3 {
            h.now += 2 * Self.ms
            h.ack(0, seq)
            _ = h.take()
        }
        h.ack(1, 1)
        _ = h.take()
        h.engine.pruneRooms()
        let log = h.engine.rooms.values.first!
        // bob has had 1 only: 2 and 3 stay.
        #expect(log.recentCount == 2)
        if case .missing = log.lookup(1) {} else { Issue.record("event 1 should be left to the store") }
        for seq in UInt64(2)...3 {
            h.now += 2 * Self.ms
            h.ack(1, seq)
            _ = h.take()
        }
        h.engine.pruneRooms()
        #expect(h.engine.rooms.values.first!.recentCount == 0)
        // A session that joins from an earlier cursor gets them from the store.
        h.addSession(2, user: "carol", follows: [(Self.room, 0)])
        h.event(4, recipients: ["alice", "bob", "carol"])
        let outputs = h.take()
        #expect(outputs.contains(.read(room: Self.room, after: 0)), "released events are read back from the store: \(outputs)")
        #expect(Harness.sent(outputs, to: 2).isEmpty)
    }

    @Test func aSessionThatNeverAcknowledgedIsNotHeldBackButWindowed() {
        var h = Harness()
        h.addSession(0, acknowledges: false)
        for seq in UInt64(1)...40 { h.event(seq) }
        let first = Harness.sent(h.take(), to: 0)
        #expect(first == Array(UInt64(1)...32))
        // Its first ACK makes it an acknowledging session: one at a time from then on.
        h.ack(0, 1)
        #expect(Harness.sent(h.take(), to: 0).isEmpty)
        for seq in UInt64(2)...32 { h.ack(0, seq) }
        #expect(Harness.sent(h.take(), to: 0) == [33])
    }

    @Test func retransmissionFollowsTheMeasuredRoundTripAndBacksOff() throws {
        var h = Harness()
        h.addSession(0)
        // Before any sample the timeout is RFC 6298's initial 1 s.
        h.event(1)
        _ = h.take()
        h.advance(999 * Self.ms)
        #expect(Harness.sent(h.take(), to: 0).isEmpty)
        h.advance(1 * Self.ms)
        #expect(Harness.sent(h.take(), to: 0) == [1])
        // Each transmission has its own msg_id, so the ACK of the second is a sample
        // of the second's round trip (no Karn ambiguity).
        h.now += 3 * Self.ms
        h.ack(0, 1, transmission: 2)
        _ = h.take()
        #expect(h.engine.sessions[0]!.estimator.smoothed == 3 * Self.ms)
        // Samples of 2 ms: the timeout becomes 2 ms + max(4 x variation, 1 ms).
        for seq in UInt64(2)...21 {
            h.event(seq)
            h.now += 2 * Self.ms
            h.ack(0, seq)
            _ = h.take()
        }
        let rto = h.engine.sessions[0]!.estimator.rto
        #expect(rto >= 3 * Self.ms && rto < 5 * Self.ms, "rto \(rto)")
        h.event(22)
        #expect(Harness.sent(h.take(), to: 0) == [22])
        // A lone loss is not congestion: the first retransmissions wait one timeout each.
        for transmission in 2...(1 + DeliveryEngine.persistentLoss) {
            h.advance(rto - Self.ms)
            #expect(Harness.sent(h.take(), to: 0).isEmpty, "transmission \(transmission) waits a whole timeout")
            h.advance(Self.ms)
            // From the third transmission on a copy goes out twice.
            #expect(Harness.sent(h.take(), to: 0) == (transmission == 2 ? [22] : [22, 22]), "transmission \(transmission)")
        }
        // Still unacknowledged: from now on each wait doubles.
        var wait = rto
        for _ in 0..<3 {
            wait *= 2
            h.advance(wait - Self.ms)
            #expect(Harness.sent(h.take(), to: 0).isEmpty)
            h.advance(Self.ms)
            #expect(Harness.sent(h.take(), to: 0) == [22, 22])
        }
        // An ACK ends the backoff: the next copy waits one timeout again.
        h.ack(0, 22)
        h.event(23)
        _ = h.take()
        h.advance(h.engine.sessions[0]!.estimator.rto)
        #expect(Harness.sent(h.take(), to: 0) == [23])
    }

    @Test func aNewSessionStartsFromTheRoundTripMeasuredFromItsAddress() {
        var h = Harness()
        h.engine.addSession(0, salt: MessageIdentifier.salt(sessionId: Harness.id(0)), source: "10.0.0.1", userId: "alice", acknowledges: true, active: true, follows: [(Self.room, 0)], now: h.now)
        for seq in UInt64(1)...10 {
            h.event(seq)
            h.now += 4 * Self.ms
            h.ack(0, seq)
        }
        let measured = h.engine.sessions[0]!.estimator.rto
        #expect(measured < 20 * Self.ms)
        // Two new sessions, one from the same address; the next event goes to both.
        h.engine.addSession(1, salt: 2, source: "10.0.0.1", userId: "bob", acknowledges: true, active: true, follows: [(Self.room, 10)], now: h.now)
        h.engine.addSession(2, salt: 3, source: "10.0.0.2", userId: "carol", acknowledges: true, active: true, follows: [(Self.room, 10)], now: h.now)
        h.event(11)
        #expect(h.engine.sessions[1]!.estimator.rto == measured)
        #expect(h.engine.sessions[2]!.estimator.rto == RTTEstimator.initialRTO)
    }

    @Test func anUnreachableSessionLosesNothingAndResumesFromItsCursor() {
        var h = Harness(timing: .adaptive(budget: 5_000 * Self.ms))
        h.addSession(0)
        h.event(1)
        h.ack(0, 1)
        for seq in UInt64(2)...6 { h.event(seq) }
        _ = h.take()
        // Copy 2 goes unanswered past the budget.
        for _ in 0..<10 { h.advance(1_000 * Self.ms) }
        let outputs = h.take()
        #expect(outputs.contains(.unreachable(session: 0)))
        #expect(h.engine.inFlight == 0)
        // More events while it is unreachable: nothing is sent.
        for seq in UInt64(7)...9 { h.event(seq) }
        #expect(Harness.sent(h.take(), to: 0).isEmpty)
        // It speaks: delivery resumes with event 2, then the rest in order,
        // under new ids.
        let oldSalt = MessageIdentifier.salt(sessionId: Harness.id(0))
        let salt = h.engine.sessions[0]!.salt
        #expect(salt != oldSalt)
        h.engine.heard(0, now: h.now, &h.out)
        var received: [UInt64] = Harness.sent(h.take(), to: 0, salt: salt)
        #expect(received == [2])
        // A late ACK of event 2's first transmission before then is not taken
        // for the new copy's: it would be a round trip of nothing.
        let estimator = h.engine.sessions[0]!.estimator
        h.now += 1 * Self.ms
        h.ack(0, 2, salt: oldSalt)
        #expect(Harness.sent(h.take(), to: 0, salt: salt).isEmpty)
        #expect(h.engine.sessions[0]!.estimator == estimator)
        while let last = received.last, last < 9 {
            h.ack(0, last)
            received += Harness.sent(h.take(), to: 0, salt: salt)
        }
        #expect(received == Array(UInt64(2)...9))
    }

    @Test func aSessionLoadedWithACursorReadsWhatItMissedFromTheStore() {
        var h = Harness()
        h.addSession(0, follows: [(Self.room, 40)])
        var outputs: [DeliveryEngine.Output] = []
        h.engine.readFollowedRooms(&outputs)
        #expect(outputs == [.read(room: Self.room, after: 40)])
        // A second request for the same place is not sent while the first is under way.
        outputs.removeAll()
        h.engine.readFollowedRooms(&outputs)
        #expect(outputs.isEmpty)
        h.engine.eventsRead(
            roomId: Self.room, after: 40, head: 43, closed: false, entries: (UInt64(41)...43).map { Harness.entry($0) }, now: h.now, &h.out)
        #expect(Harness.sent(h.take(), to: 0) == [41])
        h.ack(0, 41)
        h.ack(0, 42)
        #expect(Harness.sent(h.take(), to: 0) == [42, 43])
    }

    @Test func aGapInTheStreamIsReadFromTheStoreAndDeliveredInOrder() {
        var h = Harness()
        h.addSession(0)
        h.event(1)
        h.ack(0, 1)
        _ = h.take()
        // Events 2 and 3 never arrived (the store restarted, or the subscriber reconnected).
        h.event(4)
        h.event(5)
        #expect(h.take() == [.read(room: Self.room, after: 1)])
        h.engine.eventsRead(
            roomId: Self.room, after: 1, head: 5, closed: false, entries: (UInt64(2)...5).map { Harness.entry($0) }, now: h.now, &h.out)
        var received = Harness.sent(h.take(), to: 0)
        while let last = received.last, last < 5 {
            h.ack(0, last)
            received += Harness.sent(h.take(), to: 0)
        }
        #expect(received == [2, 3, 4, 5])
    }

    @Test func aFailedReadIsTriedAgain() {
        var h = Harness()
        h.addSession(0, follows: [(Self.room, 10)])
        h.event(12)
        #expect(h.take() == [.read(room: Self.room, after: 10)])
        h.engine.readFailed(roomId: Self.room, after: 10, now: h.now)
        h.advance(DeliveryEngine.readRetry)
        #expect(h.take() == [.read(room: Self.room, after: 10)])
    }

    @Test func eventsPrunedFromTheStoresLogAreSkippedNotAskedForForever() {
        var h = Harness()
        h.addSession(0, follows: [(Self.room, 10)])
        h.event(30)
        _ = h.take()
        // The store's log starts at 25 now.
        h.engine.eventsRead(
            roomId: Self.room, after: 10, head: 30, closed: false, entries: (UInt64(25)...29).map { Harness.entry($0) }, now: h.now, &h.out)
        #expect(Harness.sent(h.take(), to: 0) == [25])
    }

    @Test func theBacklogIsBounded() {
        var h = Harness(backlog: 100)
        h.addSession(0, follows: [(Self.room, 0)])
        h.engine.eventsRead(
            roomId: Self.room, after: 0, head: 1000, closed: false, entries: (UInt64(1)...256).map { Harness.entry($0) }, now: h.now,
            &h.out)
        let outputs = h.take()
        #expect(outputs.contains(.skipped(session: 0, room: Self.room, count: 900)))
        #expect(outputs.contains(.read(room: Self.room, after: 900)))
    }

    @Test func aSlowSessionHoldsACursorAndOneCopyNotItsBacklog() {
        var h = Harness()
        h.addSession(0)  // acknowledges, but its ACKs never come
        h.addSession(1, user: "bob", follows: [(Self.room, 0)])
        for seq in UInt64(1)...5000 {
            h.event(seq, recipients: ["alice", "bob"])
            h.ack(1, seq)  // bob keeps up
            _ = h.take()
        }
        #expect(h.engine.sessions[0]!.inFlight == 1)
        #expect(h.engine.sessions[0]!.follows.count == 1 && h.engine.sessions[0]!.follows[0].delivered == 0)
        #expect(h.engine.sessions[1]!.follows[0].delivered == 5000)
        // The room keeps only its recent events; the slow session reads the rest from the store later.
        #expect(h.engine.rooms.values.first!.recentCount == RoomLog.recentCapacity)
    }

    @Test func rewindingToACopyRestoresTheMembershipBeforeIt() {
        // A session that never acknowledged: event 1 sent, its own MEMBER_LEFT
        // (2) and event 3 passed over; the copy of 1 is to go again.
        var follow = RoomFollow(room: 0, after: 0)
        follow.inFlight = [InFlightCopy(seq: 1, firstSent: 0, lastSent: 0, transmissions: 1, due: 0, memberBefore: true)]
        follow.sent = 3
        follow.member = false
        follow.settle()
        #expect(follow.delivered == 0)
        follow.rewind(to: 1)
        #expect(follow.member, "before event 1 the session's user was a member")
        #expect(follow.sent == 0 && follow.delivered == 0 && follow.inFlight.isEmpty)
    }

    @Test func aSessionFollowsMembershipThroughTheEventsThemselves() {
        var h = Harness()
        h.addSession(0)
        let events: [(UInt64, RoomLog.Subject)] = [
            (1, .none), (2, .left(userId: "alice")), (3, .none), (4, .joined(userId: "alice")), (5, .none),
        ]
        h.engine.eventsRead(
            roomId: Self.room, after: 0, head: 5, closed: false, entries: events.map { Harness.entry($0.0, subject: $0.1) },
            now: h.now, &h.out)
        var received = Harness.sent(h.take(), to: 0)
        while let last = received.last, last < 5 {
            h.ack(0, last)
            received += Harness.sent(h.take(), to: 0)
        }
        // Its own MEMBER_LEFT and what happened while it was out are not its; its MEMBER_JOINED is.
        #expect(received == [1, 4, 5])
    }

    @Test func membersWithoutACursorFollowFromTheFirstLiveEventTheyAreARecipientOf() {
        var h = Harness()
        h.addSession(0, user: "bob", follows: [])
        h.event(7, subject: .joined(userId: "bob"), recipients: ["alice", "bob"])
        #expect(Harness.sent(h.take(), to: 0) == [7])
        h.event(8, recipients: ["alice"])  // not for bob, but bob's session now follows the room
        h.ack(0, 7)
        #expect(Harness.sent(h.take(), to: 0) == [8])
    }

    @Test func onlyTheNewestRoomListIsOnItsWay() {
        var h = Harness()
        h.addSession(0)
        func list(_ n: Int) -> CopyTemplate {
            CopyTemplate(.roomList([RoomSummary(roomId: "r\(n)", name: "room \(n)", lastActiveAt: 0)]))
        }
        func templates(_ outputs: [DeliveryEngine.Output]) -> [CopyTemplate] {
            outputs.compactMap { output -> CopyTemplate? in
                guard case .send(0, _, let template, _) = output else { return nil }
                return template
            }
        }
        for n in 0..<5 { h.engine.roomList(list(n), now: h.now, &h.out) }
        // The first goes at once; the four that follow while it is on its way do not.
        #expect(templates(h.take()) == [list(0)])
        #expect(h.engine.sessions[0]!.control.count == 1)
        // Its ACK brings the newest, and only the newest.
        h.engine.acknowledge(0, h.engine.sessions[0]!.control[0].msgId, now: h.now, &h.out)
        #expect(templates(h.take()) == [list(4)])
        // A newer one while that is on its way: the retransmission carries the newest instead.
        h.engine.roomList(list(5), now: h.now, &h.out)
        #expect(templates(h.take()).isEmpty)
        h.advance(RTTEstimator.initialRTO)
        #expect(templates(h.take()) == [list(5)])
        h.engine.acknowledge(0, h.engine.sessions[0]!.control[0].msgId, now: h.now, &h.out)
        #expect(h.engine.sessions[0]!.control.isEmpty && templates(h.take()).isEmpty)
    }

    @Test func fixedTimingSendsTheOriginalsFiveTransmissionsThenMovesOn() {
        var h = Harness(timing: .fixed(interval: 2_000 * Self.ms, transmissions: 5))
        h.addSession(0)
        h.event(1)
        h.event(2)
        var sent = Harness.sent(h.take(), to: 0)
        for _ in 0..<5 {
            h.advance(2_000 * Self.ms)
            sent += Harness.sent(h.take(), to: 0)
        }
        #expect(sent == [1, 1, 1, 1, 1, 2])
    }

    @Test func movedCursorsAreReportedOnceAndAgainAfterAFailedReport() {
        var h = Harness()
        h.addSession(0)
        for seq in UInt64(1)...3 {
            h.event(seq)
            h.ack(0, seq)
        }
        let report = h.engine.takeReport(0)
        #expect(report?.cursors.map(\.0) == [Self.room] && report?.cursors.map(\.1) == [3] && report?.acknowledges == true)
        #expect(h.engine.takeReport(0) == nil)
        h.engine.reportFailed(0, cursors: report!.cursors)
        #expect(h.engine.takeReport(0)?.cursors.map(\.1) == [3])
    }

    @Test func drainingSendsNothingNewButStillTakesAcknowledgements() {
        var h = Harness()
        h.addSession(0)
        h.event(1)
        _ = h.take()
        h.engine.startDraining()
        h.event(2)
        #expect(h.engine.awaitedByAcknowledgers == 1)
        h.ack(0, 1)
        #expect(Harness.sent(h.take(), to: 0).isEmpty)
        #expect(h.engine.awaitedByAcknowledgers == 0)
    }

    @Test func messageIdentifiersDifferPerSessionAndTransmissionAndNameTheirEvent() {
        let key = MessageIdentifier.roomKey(Self.room)
        let salt = MessageIdentifier.salt(sessionId: Harness.id(0))
        let a = MessageIdentifier.roomEvent(roomKey: key, seq: 9, salt: salt, transmission: 1)
        let b = MessageIdentifier.roomEvent(roomKey: key, seq: 9, salt: MessageIdentifier.salt(sessionId: Harness.id(1)), transmission: 1)
        let again = MessageIdentifier.roomEvent(roomKey: key, seq: 9, salt: salt, transmission: 2)
        #expect(a != b && a != again && a.hex.count == 32 && b.hex.count == 32)
        #expect(MessageIdentifier(hex: a.hex) == a)
        let decoded = again.roomEvent(salt: salt)
        #expect(decoded.roomKey == key && decoded.seq == 9 && decoded.transmission == 2)
        // Other broadcasts: a random id, with the transmission mixed in the same way.
        let control = MessageIdentifier.random()
        #expect(control.transmission(1) == control && control.transmission(3).transmission(of: control) == 3)
        #expect(MessageIdentifier.random().transmission(of: control) == nil)
        #expect(MessageIdentifier(hex: "ABCDEF" + String(repeating: "0", count: 26)) == nil)
        #expect(MessageIdentifier(hex: "00") == nil)
    }
}

/// The engine over a simulated lossy path, on virtual time.
@Suite struct LossyPathSimulationTests {
    @Test func aThirdOfDatagramsLostBothWaysStillDeliversEverythingInOrder() {
        var h = DeliveryEngineTests.Harness()
        h.addSession(0)
        var random = SimulatedPath(seed: 7)
        let total: UInt64 = 200
        var nextEvent: UInt64 = 1
        var received: [UInt64] = []
        var inFlight: [(at: UInt64, kind: String, seq: UInt64, transmission: Int)] = []  // datagrams on the path
        let oneWay: UInt64 = 1 * DeliveryEngineTests.ms
        var lastEventAt: UInt64 = 0
        var worst: UInt64 = 0
        while received.count < Int(total) && h.now < 600_000 * DeliveryEngineTests.ms {
            // Two events a second arrive from the store.
            if nextEvent <= total && h.now >= lastEventAt + 500 * DeliveryEngineTests.ms {
                h.event(nextEvent)
                nextEvent += 1
                lastEventAt = h.now
            }
            for (seq, transmission) in DeliveryEngineTests.Harness.copies(h.take(), to: 0) where random.survives() {
                inFlight.append((h.now + oneWay, "copy", seq, transmission))
            }
            // What reaches its end now: copies reach the client, which acknowledges each; ACKs reach the engine.
            let now = h.now
            let arriving = inFlight.filter { $0.at <= now }
            inFlight.removeAll { $0.at <= now }
            for datagram in arriving {
                if datagram.kind == "copy" {
                    if received.last.map({ datagram.seq > $0 }) ?? true {
                        received.append(datagram.seq)
                        // Event n entered the room at 1 s + (n - 1) x 500 ms.
                        worst = max(worst, h.now - (1_000 + (datagram.seq - 1) * 500) * DeliveryEngineTests.ms)
                    }
                    if random.survives() { inFlight.append((h.now + oneWay, "ack", datagram.seq, datagram.transmission)) }
                } else {
                    // An ACK is the session's own packet: the edge hears from it first.
                    h.heard(0)
                    h.ack(0, datagram.seq, transmission: datagram.transmission)
                }
            }
            h.advance(DeliveryEngineTests.ms)
        }
        #expect(received == Array(1...total))
        // A round trip is 2 ms; a loss costs a timeout of a few. Backoff that only ended
        // with an RTT sample (Karn's algorithm for TCP) reached its 2 s ceiling here and
        // held single events back for over 8 s.
        print("simulated: \(total) events, the slowest delivered \(worst / 1_000_000) ms after it entered the room")
        #expect(worst < 500 * DeliveryEngineTests.ms, "every event within half a second: the slowest took \(worst / 1_000_000) ms")
    }
}

/// A seeded path that drops 30 % of datagrams.
struct SimulatedPath {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func survives() -> Bool {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return (state >> 33) % 100 >= 30
    }
}

extension LossyPathSimulationTests {
    /// The acceptance's hardest path: 30 % lost each way, 5 % duplicated, 10 %
    /// held back 5 to 40 ms (reordered), at ten events a second.
    @Test func tenEventsASecondOverALossyReorderingPath() {
        var h = DeliveryEngineTests.Harness()
        h.addSession(0)
        var path = SimulatedPath(seed: 11)
        let ms = DeliveryEngineTests.ms
        let total: UInt64 = 600
        var nextEvent: UInt64 = 1
        var received: [UInt64] = []
        var onPath: [(at: UInt64, ack: Bool, seq: UInt64, transmission: Int)] = []
        var worst: UInt64 = 0
        var latencies: [UInt64] = []
        while received.count < Int(total) && h.now < 600_000 * ms {
            if nextEvent <= total && h.now >= (1_000 + (nextEvent - 1) * 100) * ms {
                h.event(nextEvent)
                nextEvent += 1
            }
            for (seq, transmission) in DeliveryEngineTests.Harness.copies(h.take(), to: 0) {
                Self.transmit((h.now, false, seq, transmission), over: &path, onto: &onPath)
            }
            let now = h.now
            let arriving = onPath.filter { $0.at <= now }
            onPath.removeAll { $0.at <= now }
            for datagram in arriving {
                if datagram.ack {
                    h.heard(0)
                    h.ack(0, datagram.seq, transmission: datagram.transmission)
                } else {
                    if received.last.map({ datagram.seq > $0 }) ?? true {
                        received.append(datagram.seq)
                        let latency = h.now - (1_000 + (datagram.seq - 1) * 100) * ms
                        worst = max(worst, latency)
                        latencies.append(latency)
                    }
                    Self.transmit((now, true, datagram.seq, datagram.transmission), over: &path, onto: &onPath)
                }
            }
            h.advance(ms / 2)
        }
        latencies.sort()
        #expect(received == Array(1...total))
        print(
            "simulated 10/s over 30% loss: p50 \(latencies[latencies.count / 2] / ms) ms, p99 \(latencies[latencies.count * 99 / 100] / ms) ms,"
                + " max \(worst / ms) ms, rto \(h.engine.sessions[0]!.estimator.rto / 1000) us")
        // Virtual time and a seeded path: the same every run. Backing off from the
        // first loss put the median at a second and the 99th percentile at 14 s;
        // single datagrams per retransmission left the 99th percentile at 7.7 s.
        #expect(latencies[latencies.count / 2] < 100 * ms, "the median event arrives within 100 ms")
        #expect(latencies[latencies.count * 99 / 100] < 2_000 * ms, "the 99th percentile within 2 s")
    }
}

extension LossyPathSimulationTests {
    typealias Datagram = (at: UInt64, ack: Bool, seq: UInt64, transmission: Int)

    /// A datagram onto a path that loses 30 %, duplicates 5 % and holds 10 % back by 5 to 40 ms.
    static func transmit(_ datagram: Datagram, over path: inout SimulatedPath, onto onPath: inout [Datagram]) {
        let ms = DeliveryEngineTests.ms
        guard path.survives() else { return }
        for _ in 0..<(path.chance(5) ? 2 : 1) {
            var delay = path.between(0, 2) * ms
            if path.chance(10) { delay += path.between(5, 40) * ms }
            onPath.append((datagram.at + delay + ms / 2, datagram.ack, datagram.seq, datagram.transmission))
        }
    }
}

extension SimulatedPath {
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 33
    }
    mutating func chance(_ percent: UInt64) -> Bool { next() % 100 < percent }
    mutating func between(_ low: UInt64, _ high: UInt64) -> UInt64 { low + next() % (high - low + 1) }
}
