import ChatWire
import Foundation
import GRDB
import IPCMessages
import Testing

@testable import udpchat_store

@Suite struct AccountTests {
    @Test(arguments: TestDatabase.available) func loginCreatesTheUserOnceAndReportsIt(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (first, user) = await store.loggedIn("alice@example.com")
        #expect(user.email == "alice@example.com" && user.name == "alice" && user.userID.count == 32 && !user.hasRoom)
        let (_, again) = await store.loggedIn("alice@example.com")
        #expect(again.userID == user.userID)
        let status = await store.call(first, .status(IPCStatus()))
        #expect(status.status.user.userID == user.userID && status.sessionUserID == user.userID)
    }

    @Test(arguments: TestDatabase.available) func invalidEmailIsRefusedAndChangesNothing(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let session = StoreHarness.Session()
        var login = IPCLogin()
        login.email = "not an email"
        let response = await store.call(session, .login(login), create: true)
        #expect(response.errorText == "Please provide a valid email address")
        let count = try await store.backend.read { tx in try tx.user(email: "not an email") == nil }
        #expect(count)
        // The session row itself exists: it was the session's first authenticated packet.
        let status = await store.call(session, .status(IPCStatus()))
        #expect(status.errorText == nil && !status.status.hasUser)
    }

    @Test(arguments: TestDatabase.available) func aSessionWithoutARowIsInvalid(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let response = await store.call(StoreHarness.Session(), .status(IPCStatus()))
        #expect(response.errorText == "Invalid session ID")
    }

    @Test(arguments: TestDatabase.available) func logoutClearsOnlyThisSession(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (a, _) = await store.loggedIn("alice@example.com")
        let (b, _) = await store.loggedIn("alice@example.com")
        let out = await store.call(a, .logout(IPCLogout()))
        #expect(out.status.loggedOut && out.sessionUserID.isEmpty)
        #expect(await store.call(a, .logout(IPCLogout())).errorText == "You are not logged in.")
        #expect(await store.call(a, .status(IPCStatus())).status.hasUser == false)
        #expect(await store.call(b, .status(IPCStatus())).status.hasUser)
    }

    @Test(arguments: TestDatabase.available) func mergeSessionNeedsTheOldKeyAndALoggedInSession(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (old, user) = await store.loggedIn("alice@example.com")
        let fresh = StoreHarness.Session()
        var merge = IPCMergeSession()
        merge.oldSessionID = old.id
        merge.oldKeyDigest = Data(repeating: 0, count: 32)
        #expect(await store.call(fresh, .mergeSession(merge), create: true).mergeFailed == IPCMergeFailed())
        merge.oldKeyDigest = old.digest
        let welcome = await store.call(fresh, .mergeSession(merge))
        #expect(welcome.welcome.userID == user.userID && welcome.sessionUserID == user.userID)
        // An anonymous old session cannot be merged.
        _ = await store.call(old, .logout(IPCLogout()))
        let another = StoreHarness.Session()
        #expect(await store.call(another, .mergeSession(merge), create: true).mergeFailed == IPCMergeFailed())
        merge.oldSessionID = "ffffffffffffffffffffffffffffffff"
        #expect(await store.call(another, .mergeSession(merge)).mergeFailed == IPCMergeFailed())
    }

    @Test(arguments: TestDatabase.available) func passwordsAreCheckedAgainstScryptHashes(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (session, user) = await store.loggedIn("bob@example.com")
        let hash = try PasswordHash.make("correct horse")
        #expect(hash.hasPrefix("scrypt$16384$8$1$"))
        try await store.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", [hash, user.userID])
        var login = IPCLogin()
        login.email = "bob@example.com"
        #expect(await store.call(session, .login(login)).pleaseLogin.email == "bob@example.com")
        login.password = "wrong"
        #expect(await store.call(session, .login(login)).unauthorised == IPCUnauthorised())
        login.password = "correct horse"
        #expect(await store.call(session, .login(login)).welcome.userID == user.userID)
        #expect(!PasswordHash.verify("x", against: "md5-or-garbage"))
    }

    @Test(arguments: TestDatabase.available) func wrongPasswordsLockTheAccountForAWhile(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, loginFailures: 3)
        let session = try await store.loggedIn("bob@example.com", password: "right password")
        var login = StoreHarness.login("bob@example.com", "wrong")
        for _ in 0..<3 { #expect(await store.call(session, .login(login)).unauthorised == IPCUnauthorised()) }
        login.password = "right password"
        let held = await store.call(session, .login(login))
        #expect(held.errorText?.hasPrefix("Too many failed logins for this account") == true)
        // Refused before the operation ran: the answer does not say who the session's user is.
        #expect(held.userUnknown && held.sessionUserID.isEmpty)
        // A refusal by the operation itself does say: a second LOGOUT finds nobody logged in.
        let (dave, _) = await store.loggedIn("dave@example.com")
        _ = await store.call(dave, .logout(IPCLogout()))
        let again = await store.call(dave, .logout(IPCLogout()))
        #expect(again.errorText != nil && !again.userUnknown && again.sessionUserID.isEmpty)
        // Another account is not affected.
        let (other, _) = await store.loggedIn("carol@example.com")
        #expect(!other.id.isEmpty)
    }

    @Test(arguments: TestDatabase.available) func guessesFromOneAddressDoNotLockTheOwnerOutElsewhere(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, loginFailures: 3)
        let session = try await store.loggedIn("erin@example.com", password: "right password")
        var login = StoreHarness.login("erin@example.com", "wrong")
        let attacker = StoreHarness.Session()
        for _ in 0..<3 {
            #expect(await store.call(attacker, .login(login), create: true, from: "198.51.100.7:4000").unauthorised == IPCUnauthorised())
        }
        login.password = "right password"
        // The guesser's address waits, whichever port it uses; the owner's does not.
        #expect(await store.call(attacker, .login(login), from: "198.51.100.7:4001").errorText?.hasPrefix("Too many failed logins") == true)
        #expect(await store.call(session, .login(login), from: "203.0.113.9:5000").welcome.email == "erin@example.com")
        // IPv6 addresses count by their /64.
        login.password = "wrong"
        for port in 1...3 {
            _ = await store.call(attacker, .login(login), from: "[2001:db8:1:2::\(port)]:4000")
        }
        login.password = "right password"
        #expect(await store.call(attacker, .login(login), from: "[2001:db8:1:2:ffff::1]:4000").errorText?.hasPrefix("Too many failed logins") == true)
        #expect(await store.call(attacker, .login(login), from: "[2001:db8:1:3::1]:4000").welcome.email == "erin@example.com")
    }

    @Test(arguments: TestDatabase.available) func anUnknownAccountsPasswordIsHashedAsAKnownOnesIs(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, requirePasswords: true)
        let (session, _) = await store.loggedIn("frank@example.com")
        let hash = try PasswordHash.make("right password")
        try await store.backend.write { tx in try tx.setPasswordHash(user: 1, hash: hash) }
        var login = IPCLogin()
        login.password = "a guess"
        // A known account and an unknown one each cost one hash: the time
        // taken does not tell which accounts exist.
        for email in ["frank@example.com", "nobody-here@example.com"] {
            login.email = email
            let before = store.service.hashing.completed.value
            let response = await store.call(session, .login(login))
            #expect(response.welcome.email.isEmpty, "\(email): \(response)")
            #expect(store.service.hashing.completed.value == before + 1, "\(email)")
        }
    }

    @Test(arguments: TestDatabase.available) func withPasswordsRequiredAnEmailAloneDoesNothing(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, requirePasswords: true)
        let session = StoreHarness.Session()
        var login = IPCLogin()
        login.email = "new@example.com"
        // Unknown account, no password: asked for one (the same answer as for a known account).
        #expect(await store.call(session, .login(login), create: true).pleaseLogin.email == "new@example.com")
        login.password = "anything"
        #expect(await store.call(session, .login(login)).unauthorised == IPCUnauthorised())
        let created = try await store.backend.read { tx in try tx.user(email: "new@example.com") }
        #expect(created == nil)
        // With a password set, the account logs in.
        let hash = try PasswordHash.make("anything")
        try await store.backend.write { tx in
            let user = try tx.insertUser(userId: SecureRandom.identifier(), email: "new@example.com", name: "new", now: 0)
            try tx.setPasswordHash(user: user.rowId, hash: hash)
        }
        #expect(await store.call(session, .login(login)).welcome.email == "new@example.com")
    }
}

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
        let store = try StoreHarness(database, writeLimits: WriteLimits(roomsPerMinute: 3, membershipChangesPerMinute: 1000))
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

@Suite struct SessionStoreTests {
    @Test(arguments: TestDatabase.available) func sessionsAreCreatedOnlyWithTheirWrappedKeyAndLoadable(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (session, user) = await store.loggedIn("alice@example.com")
        var load = IPCLoadSession()
        load.sessionID = session.id
        let loaded = await store.call(session, .loadSession(load)).loadedSession
        #expect(loaded.found && loaded.wrappedKey == Data([1, 2, 3]) && loaded.userID == user.userID)
        load.sessionID = SecureRandom.identifier()
        #expect(await store.call(session, .loadSession(load)).loadedSession.found == false)
    }

    @Test(arguments: TestDatabase.available) func touchesMoveLivenessAndTheReplayMarkForwardOnly(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (session, _) = await store.loggedIn("alice@example.com")
        var touch = IPCTouchSessions()
        var activity = IPCSessionActivity()
        activity.sessionID = session.id
        activity.lastActiveAt = 1
        activity.replayMark = 900
        touch.sessions = [activity]
        _ = await store.call(session, .touchSessions(touch))
        activity.replayMark = 500
        touch.sessions = [activity]
        _ = await store.call(session, .touchSessions(touch))
        var load = IPCLoadSession()
        load.sessionID = session.id
        #expect(await store.call(session, .loadSession(load)).loadedSession.replayMark == 900)
    }

    @Test(arguments: TestDatabase.available) func idleSessionsExpire(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (session, _) = await store.loggedIn("alice@example.com")
        try await store.execute("UPDATE sessions SET last_active_at = 0 WHERE session_id = ?", [session.id])
        #expect(await store.service.expireIdleSessions() == 1)
        #expect(await store.call(session, .status(IPCStatus())).errorText == "Invalid session ID")
    }

    @Test func migrationsAreNumberedAndIdempotentAndCommitsAreDurable() throws {
        let store = try StoreHarness()
        let path = store.directory.appendingPathComponent("test.db").path
        let result = try SQLiteBackend.migrate(path: path)
        #expect(result.applied.isEmpty && result.all == ["0001_initial", "0002_ai_jobs", "0003_delivery", "0004_request_results", "0005_job_leases", "0006_session_edges"])
        let level = try store.sqlite.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        #expect(level == 2 || level == 1)  // readers report their own connection; the writer is checked at open
        let writerLevel = try store.sqlite.pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        #expect(writerLevel == 2)
    }
}

@Suite struct AIRequestTests {
    func requestAI(_ store: StoreHarness, _ session: StoreHarness.Session, _ roomId: String, _ content: String) async -> IPCStoreResponse {
        var request = IPCRequestAI()
        request.roomID = roomId
        request.content = content
        return await store.call(session, .requestAi(request))
    }

    @Test(arguments: TestDatabase.available) func checksComeInTheOriginalsOrder(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let anonymous = StoreHarness.Session()
        var request = IPCRequestAI()
        request.roomID = "r"
        #expect(await store.call(anonymous, .requestAi(request), create: true).errorText == "Authentication required.")
        let (alice, _) = await store.loggedIn("alice@example.com")
        let (bob, _) = await store.loggedIn("bob@example.com")
        #expect(await requestAI(store, alice, "", "").errorText == "Room ID is required.")
        #expect(await requestAI(store, alice, "nope", "").errorText == "Room not found.")
        let room = await store.createRoom(alice, "General").roomCreated
        #expect(await requestAI(store, bob, room.roomID, "").errorText == "You must join the room to request AI messages.")
    }

    @Test(arguments: TestDatabase.available) func aJobCarriesTheCappedHistoryOldestFirst(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        for i in 0..<5 { _ = await store.post(alice, room.roomID, "message \(i)") }
        #expect(await requestAI(store, alice, room.roomID, "draft").errorText == nil)
        let jobs = try await store.backend.read { tx in try tx.queuedJobs() }
        #expect(jobs.count == 1 && jobs[0].mode == "improve")
        let job = try IPCAIJob(serializedBytes: jobs[0].request)
        #expect(job.draft == "draft" && job.userName == "alice" && job.roomName == "General")
        #expect(job.context.map(\.content) == (0..<5).map { "message \($0)" })
        // The byte cap drops the oldest first.
        let capped = Operations.capped(job.context, bytes: 3 * ("alice".count + "message 0".count + 2))
        #expect(capped.map(\.content) == ["message 2", "message 3", "message 4"])
    }

    @Test(arguments: TestDatabase.available) func completingAJobStoresOneAIMessageAndFailingSendsANotice(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, user) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = await requestAI(store, alice, room.roomID, "")
        _ = await requestAI(store, alice, room.roomID, "second")
        let jobs = try await store.backend.read { tx in try tx.queuedJobs() }
        _ = store.takeEvents()
        let first = jobs[0].jobId
        let complete = try await store.backend.write { tx in try Operations.completeJob(tx, jobId: first, text: " reply ", nowMs: 1) }
        #expect(complete.events.first?.room.message.content == "reply" && complete.events.first?.room.message.userID == user.userID)
        let again = try await store.backend.write { tx in try Operations.completeJob(tx, jobId: first, text: "twice", nowMs: 2) }
        #expect(again.events.isEmpty)
        let failed = try await store.backend.write { tx in try Operations.failJob(tx, jobId: jobs[1].jobId, reason: "down.", nowMs: 3) }
        #expect(failed.events.first?.sessionNotice.error == "AI generation failed: down.")
        #expect(failed.events.first?.sessionNotice.sessionID == alice.id)
        let history = await store.history(alice, room.roomID).history.items.map(\.content)
        #expect(history == ["reply"])
        let generated = try await store.backend.read { tx in try tx.latestMessage(room: 1)?.generated }
        #expect(generated == true)
    }
}

extension AIRequestTests {
    /// A model's reply longer than a datagram carries is cut to the longest
    /// text whose broadcast copy still fits, whatever the JSON escaping
    /// adds (a quote is two bytes, a control character six).
    @Test(arguments: ["x", "\"", "\u{1}", "é", "👩‍👩‍👧"])
    func aReplyTooLongForADatagramIsCutToOneThatFits(unit: String) async throws {
        let store = try StoreHarness()
        let (alice, user) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = await requestAI(store, alice, room.roomID, "")
        let job = try #require(try await store.backend.read { tx in try tx.queuedJobs() }.first)
        let long = String(repeating: unit, count: 70_000)
        let complete = try await store.backend.write { tx in try Operations.completeJob(tx, jobId: job.jobId, text: long, nowMs: 1) }
        let message = complete.events.first?.room.message
        let content = try #require(message?.content)
        #expect(content.hasSuffix("…") && long.hasPrefix(String(content.dropLast())))
        let event = MessageEvent(
            roomId: room.roomID, messageId: try #require(message?.messageID), userId: user.userID, name: user.name, content: content,
            timestamp: message?.timestamp ?? 0)
        let copy = ServerPacket.message(event).json(msgId: String(repeating: "f", count: 32)).serialized()
        #expect(WireSpec.fitsSealed(copy.count))
        // Not cut further than needed: with the largest message id (what
        // the cut allows for), one more character would not fit.
        var longer = event
        longer.messageId = .max
        longer.content = String(long.prefix(content.count)) + "…"
        #expect(!WireSpec.fitsSealed(ServerPacket.message(longer).json(msgId: String(repeating: "f", count: 32)).serialized().count))
        #expect(await store.history(alice, room.roomID).history.items.map(\.content) == [content])
    }

    @Test(arguments: TestDatabase.available) func endedJobsAreDeletedAfterAWeekAndQueuedOnesNever(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = await requestAI(store, alice, room.roomID, "one")
        _ = await requestAI(store, alice, room.roomID, "two")
        let jobs = try await store.backend.read { tx in try tx.queuedJobs() }
        _ = try await store.backend.write { tx in try Operations.failJob(tx, jobId: jobs[0].jobId, reason: "x.", nowMs: 1) }
        _ = await store.service.expireIdleSessions()
        let left = try await store.count("ai_jobs")
        #expect(left == 1)
        #expect(try await store.backend.read { tx in try tx.queuedJobs() }.map(\.jobId) == [jobs[1].jobId])
    }
}
