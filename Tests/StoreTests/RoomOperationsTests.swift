import ChatWire
import Foundation
import IPCMessages
import Testing
import TestSupport

@testable import udpchat_store

@Suite struct RoomTests {
    static func post(_ roomId: String, _ content: String) -> IPCStoreRequest.OneOf_Op {
        var post = IPCPostMessage()
        post.roomID = roomId
        post.content = content
        return .postMessage(post)
    }

    /// A write sent again with the same nonce (the edge gave up waiting and
    /// the client asked again) is carried out once and answered as the first
    /// time; a new nonce is a new write.
    @Test(arguments: TestDatabase.available) func aWriteRepeatedWithItsNonceIsCarriedOutOnce(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = store.takeEvents()
        let nonce: [UInt8] = Array(repeating: 7, count: 12)
        let first = await store.call(alice, Self.post(room.roomID, "once"), nonce: nonce)
        let again = await store.call(alice, Self.post(room.roomID, "once"), nonce: nonce)
        #expect(first.messageSent.messageID > 0 && again.messageSent.messageID == first.messageSent.messageID)
        #expect(store.takeEvents().count == 1, "the repeat publishes nothing")
        let other = await store.call(alice, Self.post(room.roomID, "once"), nonce: Array(repeating: 8, count: 12))
        #expect(other.messageSent.messageID > first.messageSent.messageID)
        #expect(await store.history(alice, room.roomID).history.items.map(\.content) == ["once", "once"])
        // Another session's request with the same nonce is its own.
        let (bob, _) = await store.loggedIn("bob@example.com")
        _ = await store.join(bob, room.roomID)
        let bobs = await store.call(bob, Self.post(room.roomID, "bob's"), nonce: nonce)
        #expect(bobs.messageSent.messageID > other.messageSent.messageID)
        // A refused write is not remembered: sent again once allowed, it runs.
        let (carol, _) = await store.loggedIn("carol@example.com")
        let refused = await store.call(carol, Self.post(room.roomID, "not yet"), nonce: nonce)
        #expect(refused.errorText == ProtocolText.joinBeforeSending)
        _ = await store.join(carol, room.roomID)
        #expect(await store.call(carol, Self.post(room.roomID, "now"), nonce: nonce).messageSent.messageID > 0)
    }

    /// A write whose caller's deadline has passed is dropped unstarted.
    @Test(arguments: TestDatabase.available) func aWritePastItsDeadlineIsNotCarriedOut(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        let past = Int64(Date().timeIntervalSince1970 * 1000) - 1
        let late = await store.call(alice, Self.post(room.roomID, "too late"), nonce: [1], deadlineUnixMs: past)
        #expect(late.errorText == ProtocolText.packetFailurePrefix + "the store did not answer in time")
        #expect(late.userUnknown)
        let future = Int64(Date().timeIntervalSince1970 * 1000) + 60_000
        #expect(await store.call(alice, Self.post(room.roomID, "in time"), nonce: [2], deadlineUnixMs: future).messageSent.messageID > 0)
        #expect(await store.history(alice, room.roomID).history.items.map(\.content) == ["in time"])
        // The same request asked past its deadline: not carried out again,
        // but answered as it was (the edge's last question).
        let asked = await store.call(alice, Self.post(room.roomID, "in time"), nonce: [2], deadlineUnixMs: past)
        #expect(asked.messageSent.content == "in time" && asked.messageSent.messageID > 0)
        #expect(await store.history(alice, room.roomID).history.items.map(\.content) == ["in time"])
    }

    /// A user over the room-creation limit gets a clear error, and nothing
    /// is written or broadcast; another user has a budget of their own.
    @Test(arguments: TestDatabase.available) func aUserCreatingRoomsTooFastIsRefusedWithoutAWriteOrABroadcast(_ database: TestDatabase) async throws {
        let clock = ManualClock()
        let store = try StoreHarness(database, writeLimits: WriteLimits(roomsPerMinute: 3, membershipChangesPerMinute: 1000), clock: clock)
        let (alice, _) = await store.loggedIn("alice@example.com")
        for i in 0..<3 { #expect(await store.createRoom(alice, "room \(i)").errorText == nil) }
        _ = store.takeEvents()
        let refused = await store.createRoom(alice, "one too many")
        #expect(refused.errorText == "You have created 3 rooms in the last minute; wait a moment and try again.")
        #expect(store.takeEvents().isEmpty)
        let rooms = try await store.backend.read { tx in try tx.roomNameTaken("one too many") }
        #expect(!rooms)
        // A name that is taken is answered as before, and costs nothing.
        #expect(await store.createRoom(alice, "room 0").errorText == ProtocolText.roomNameTaken)
        let (bob, _) = await store.loggedIn("bob@example.com")
        #expect(await store.createRoom(bob, "bob's").errorText == nil)
        // The allowance comes back at 3 a minute, one every 20 s, by the
        // service's clock.
        clock.advance(.seconds(15))
        #expect(await store.createRoom(alice, "still too soon").errorText?.contains("wait a moment") == true)
        clock.advance(.seconds(6))
        #expect(await store.createRoom(alice, "twenty seconds later").errorText == nil)
        #expect(await store.createRoom(alice, "and one more").errorText?.contains("wait a moment") == true)
    }

    /// Joining and leaving in a loop: past the limit each gets an error and
    /// sends nothing to the room's members.
    @Test(arguments: TestDatabase.available) func joiningAndLeavingInALoopIsCutOffWithAClearError(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, writeLimits: WriteLimits(roomsPerMinute: 100, membershipChangesPerMinute: 4))
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        let (mallory, _) = await store.loggedIn("mallory@example.com")
        for _ in 0..<2 {
            #expect(await store.join(mallory, room.roomID).errorText == nil)
            #expect(await store.leave(mallory, room.roomID).errorText == nil)
        }
        _ = store.takeEvents()
        let refused = await store.join(mallory, room.roomID)
        #expect(refused.errorText == "You have joined or left rooms 4 times in the last minute; wait a moment and try again.")
        #expect(store.takeEvents().isEmpty)
        let members = await store.call(alice, .listMembers({ var list = IPCListMembers(); list.roomID = room.roomID; return list }()))
        #expect(members.members.members.count == 1)
    }

    @Test(arguments: TestDatabase.available) func createRoomChecksInOrderAndBroadcastsTheList(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let anonymous = StoreHarness.Session()
        var create = IPCCreateRoom()
        create.name = "General"
        #expect(await store.call(anonymous, .createRoom(create), create: true).errorText == "Authentication required.")
        let (alice, _) = await store.loggedIn("alice@example.com")
        #expect(await store.createRoom(alice, "").errorText == "Room name is required.")
        let created = await store.createRoom(alice, "General")
        #expect(created.roomCreated.name == "General" && created.roomCreated.roomID.count == 32)
        #expect(await store.createRoom(alice, "General").errorText == "Room with that name already exists.")
        #expect(await store.createRoom(alice, String(repeating: "x", count: 256)).errorText != nil)
        let events = store.takeEvents()
        #expect(events.count == 1 && events[0].roomList.rooms.map(\.name) == ["General"])
        let members = await store.members(alice, created.roomCreated.roomID)
        #expect(members.members.members.map(\.isAdmin) == [true])
    }

    @Test(arguments: TestDatabase.available) func joinAnswersAgainForMembersWithoutBroadcasting(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, aliceUser) = await store.loggedIn("alice@example.com")
        let (bob, bobUser) = await store.loggedIn("bob@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = store.takeEvents()
        #expect(await store.join(bob, "").errorText == "Room ID is required.")
        #expect(await store.join(bob, "nope").errorText == "Room not found.")
        #expect(await store.join(bob, room.roomID).joinedRoom.roomID == room.roomID)
        let events = store.takeEvents()
        #expect(events.count == 2)
        #expect(events[0].user.userID == bobUser.userID && events[0].user.roomJoined.roomID == room.roomID)
        #expect(events[0].user.exceptSessionID == bob.id)
        let joined = events[1].room
        #expect(joined.memberJoined.member.userID == bobUser.userID && !joined.memberJoined.member.isAdmin)
        #expect(Set(joined.recipientUserIds) == [aliceUser.userID, bobUser.userID] && joined.seq == 1)
        // Joining again: the same answer, nothing broadcast (docs/protocol.md §12 item 28).
        #expect(await store.join(bob, room.roomID).joinedRoom.roomID == room.roomID)
        #expect(store.takeEvents().isEmpty)
        // The joiner's current room is now this one.
        #expect(await store.call(bob, .status(IPCStatus())).status.user.room.roomID == room.roomID)
    }

    @Test(arguments: TestDatabase.available) func leavingTellsTheOthersAndTheLastLeaveClosesTheRoomKeepingItsMessages(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, aliceUser) = await store.loggedIn("alice@example.com")
        let (bob, bobUser) = await store.loggedIn("bob@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = await store.join(bob, room.roomID)
        _ = await store.post(bob, room.roomID, "hello")
        _ = store.takeEvents()
        #expect(await store.leave(bob, room.roomID).leftRoom.roomID == room.roomID)
        #expect(await store.leave(bob, room.roomID).errorText == "You are not a member of this room.")
        var events = store.takeEvents()
        #expect(events.count == 2 && events[0].user.roomLeft.roomID == room.roomID)
        #expect(events[1].room.memberLeft.memberID == bobUser.userID && events[1].room.recipientUserIds == [aliceUser.userID])
        _ = await store.leave(alice, room.roomID)
        events = store.takeEvents()
        #expect(events.count == 2 && events[1].roomList.rooms.isEmpty)
        #expect(await store.join(bob, room.roomID).errorText == "Room not found.")
        // The name is free again, and the closed room's messages are still stored.
        #expect(await store.createRoom(alice, "General").errorText == nil)
        let kept = try await store.count("messages")
        #expect(kept == 1)
    }
}
