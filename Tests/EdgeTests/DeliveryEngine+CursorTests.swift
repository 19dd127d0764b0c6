import Testing

@testable import udpchat_edge

/// Cursors: what a session missed is read from the store, gaps and pruned
/// events are handled, the backlog is bounded, and membership follows the
/// events themselves.
extension DeliveryEngineTests {
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
}
