import Testing

@testable import udpchat_store

@Suite struct MessageTests {
    @Test(arguments: TestDatabase.available) func postingChecksInOrderThenStoresAndBroadcasts(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, aliceUser) = await store.loggedIn("alice@example.com")
        let (bob, _) = await store.loggedIn("bob@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = store.takeEvents()
        #expect(await store.post(alice, "", "x").errorText == "Room ID and content are required.")
        #expect(await store.post(alice, room.roomID, "").errorText == "Room ID and content are required.")
        #expect(await store.post(alice, "nope", "x").errorText == "Room not found.")
        #expect(await store.post(bob, room.roomID, "x").errorText == "You must join the room before sending messages.")
        let sent = await store.post(alice, room.roomID, "Hi all").messageSent
        #expect(sent.content == "Hi all" && sent.roomID == room.roomID && sent.messageID > 0)
        let events = store.takeEvents()
        #expect(events.count == 1)
        let message = events[0].room.message
        #expect(message.messageID == sent.messageID && message.userID == aliceUser.userID && message.name == "alice")
        #expect(events[0].room.recipientUserIds == [aliceUser.userID])
    }

    @Test(arguments: TestDatabase.available) func historyIsTheNewestHundredInCommitOrderAndOnlyForMembers(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let (bob, _) = await store.loggedIn("bob@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        // All within the same second: order must still be commit order.
        for i in 0..<130 { _ = await store.post(alice, room.roomID, "m\(i)") }
        let history = await store.history(alice, room.roomID).history
        #expect(history.roomID == room.roomID)
        #expect(history.items.map(\.content) == (30..<130).map { "m\($0)" })
        #expect(await store.history(bob, room.roomID).errorText == "You are not a member of this room.")
        // Without room_id: the user's current room (docs/protocol.md §12 item 31).
        #expect(await store.history(alice, nil).history.items.count == 100)
        #expect(await store.history(bob, nil).errorText == "Room ID is required.")
        #expect(await store.members(bob, room.roomID).errorText == "You are not a member of this room.")
    }

    @Test(arguments: TestDatabase.available) func concurrentWritesAreAllCommittedAndEventsFollowCommitOrder(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = store.takeEvents()
        let ids = await withTaskGroup(of: Int64.self) { group in
            for i in 0..<200 { group.addTask { await store.post(alice, room.roomID, "c\(i)").messageSent.messageID } }
            return await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(Set(ids).count == 200 && !ids.contains(0))
        let events = store.takeEvents()
        #expect(events.map(\.room.message.messageID) == ids.sorted())
        #expect(events.map(\.room.seq) == Array(1...200).map(UInt64.init))
    }
}
