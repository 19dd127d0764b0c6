import ChatWire
import Foundation
import GRDB
import IPCMessages
import Testing

@testable import udpchat_store

/// The store's half of delivery from durable state: the room event log,
/// the rooms each session follows with its cursors, and what a starting
/// edge loads.
@Suite struct DeliveryStateTests {
    private func read(_ store: StoreHarness, _ rooms: [(String, UInt64)], limit: UInt32 = 100) async -> IPCRoomEventPages {
        var request = IPCStoreRequest()
        request.readRoomEvents.limit = limit
        request.readRoomEvents.rooms = rooms.map(IPCRoomCursor.init)
        return await store.service.handle(request).roomEvents
    }

    private func cursors(_ follows: IPCSessionFollows) -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: follows.cursors.map { ($0.roomID, $0.seq) })
    }

    @Test(arguments: TestDatabase.available) func everyRoomEventIsLoggedAsPublishedWithoutRecipients(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let (bob, _) = await store.loggedIn("bob@example.com")
        let room = await store.createRoom(alice, "General").roomCreated.roomID
        _ = await store.join(bob, room)
        for text in ["one", "two", "three"] { _ = await store.post(alice, room, text) }
        _ = await store.leave(bob, room)
        let published = store.takeEvents().compactMap { event -> IPCRoomEvent? in
            guard case .room(let roomEvent)? = event.kind else { return nil }
            return roomEvent
        }
        #expect(published.map(\.seq) == [1, 2, 3, 4, 5])
        #expect(published.allSatisfy { !$0.recipientUserIds.isEmpty })

        let page = await read(store, [(room, 0)]).pages
        #expect(page.count == 1 && page[0].roomID == room && page[0].headSeq == 5 && !page[0].closed)
        let logged = page[0].events
        #expect(logged.map(\.seq) == [1, 2, 3, 4, 5])
        for (stored, sent) in zip(logged, published) {
            var withoutRecipients = sent
            withoutRecipients.recipientUserIds = []
            #expect(stored == withoutRecipients)
        }
        // From a position, and a page at a time.
        let rest = await read(store, [(room, 3)], limit: 1).pages[0]
        #expect(rest.events.map(\.seq) == [4] && rest.headSeq == 5)
    }

    @Test(arguments: TestDatabase.available) func readingUnknownAndClosedRoomsSaysSo(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "Short-lived").roomCreated.roomID
        _ = await store.post(alice, room, "hello")
        _ = await store.leave(alice, room)  // the last member: the room closes
        let pages = await read(store, [(room, 0), (SecureRandom.identifier(), 0)]).pages
        #expect(pages.count == 2)
        #expect(pages[0].closed && pages[0].headSeq == 1 && pages[0].events.map(\.seq) == [1])
        #expect(pages[1].closed && pages[1].events.isEmpty)
    }

    @Test(arguments: TestDatabase.available) func sessionsFollowTheRoomsOfTheirUserFromWhereTheyJoined(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let created = await store.createRoom(alice, "General")
        let room = created.roomCreated.roomID
        #expect(cursors(created.follows) == [room: 0])
        for text in ["a", "b"] { _ = await store.post(alice, room, text) }

        // Bob has two sessions; joining makes both follow from the MEMBER_JOINED event (seq 3).
        let (bob1, _) = await store.loggedIn("bob@example.com")
        let (bob2, _) = await store.loggedIn("bob@example.com")
        let joined = await store.join(bob1, room)
        #expect(joined.hasFollows && cursors(joined.follows) == [room: 2])
        let loaded = await store.call(bob2, .loadSession(IPCLoadSession.with { $0.sessionID = bob2.id }))
        #expect(cursors(IPCSessionFollows.with { $0.cursors = loaded.loadedSession.cursors }) == [room: 2])

        // A new login of a member starts at the room's current sequence number.
        _ = await store.post(alice, room, "c")
        var login = IPCLogin()
        login.email = "bob@example.com"
        let fresh = await store.call(StoreHarness.Session(), .login(login), create: true)
        #expect(cursors(fresh.follows) == [room: 4])

        // Leaving stops every session of the user; logging out stops this one.
        let left = await store.leave(bob2, room)
        #expect(left.hasFollows && left.follows.cursors.isEmpty)
        let loadedAfter = await store.call(bob1, .loadSession(IPCLoadSession.with { $0.sessionID = bob1.id }))
        #expect(loadedAfter.loadedSession.cursors.isEmpty)
        let out = await store.call(alice, .logout(IPCLogout()))
        #expect(out.hasFollows && out.follows.cursors.isEmpty)
    }

    @Test(arguments: TestDatabase.available) func theSameUserLoggingInAgainKeepsItsCursors(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated.roomID
        for text in ["a", "b", "c"] { _ = await store.post(alice, room, text) }
        // The edge reported alice's session delivered through 1 only.
        await touch(store, alice, cursors: [(room, 1)])
        var login = IPCLogin()
        login.email = "alice@example.com"
        #expect(cursors(await store.call(alice, .login(login)).follows) == [room: 1])
        // Another user on the same session starts afresh.
        login.email = "carol@example.com"
        #expect(await store.call(alice, .login(login)).follows.cursors.isEmpty)
    }

    private func touch(
        _ store: StoreHarness, _ session: StoreHarness.Session, cursors: [(String, UInt64)], address: String = "",
        acknowledges: Bool = false, at time: Int64 = Int64(Date().timeIntervalSince1970)
    ) async {
        var activity = IPCSessionActivity()
        activity.sessionID = session.id
        activity.lastActiveAt = time
        activity.address = address
        activity.acknowledges = acknowledges
        activity.cursors = cursors.map(IPCRoomCursor.init)
        var request = IPCStoreRequest()
        request.touchSessions.sessions = [activity]
        let response = await store.service.handle(request)
        #expect(response.errorText == nil)
    }

    @Test(arguments: TestDatabase.available) func reportedCursorsOnlyMoveForwardAndOnlyInRoomsOfTheUser(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (alice, _) = await store.loggedIn("alice@example.com")
        let (bob, _) = await store.loggedIn("bob@example.com")
        let room = await store.createRoom(alice, "General").roomCreated.roomID
        let other = await store.createRoom(bob, "Bob's").roomCreated.roomID
        for text in ["a", "b", "c"] { _ = await store.post(alice, room, text) }

        let vectors: [(reported: [(String, UInt64)], expected: [String: UInt64])] = [
            ([(room, 2)], [room: 2]),  // 1: forward
            ([(room, 1)], [room: 2]),  // 2: never back
            ([(other, 9)], [room: 2]),  // 3: not a member of bob's room: no cursor appears
            ([(SecureRandom.identifier(), 1)], [room: 2]),  // 4: no such room
            ([(room, 3), (other, 1)], [room: 3]),  // 5: the member's room moves, the other stays absent
        ]
        for (number, vector) in vectors.enumerated() {
            await touch(store, alice, cursors: vector.reported)
            let loaded = await store.call(alice, .loadSession(IPCLoadSession.with { $0.sessionID = alice.id })).loadedSession
            #expect(cursors(IPCSessionFollows.with { $0.cursors = loaded.cursors }) == vector.expected, "vector \(number + 1)")
        }
    }

    @Test(arguments: TestDatabase.available) func aStartingEdgeLoadsRecentSessionsWithAddressesAndCursorsPageByPage(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let now = Int64(Date().timeIntervalSince1970)
        let (alice, user) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated.roomID
        _ = await store.post(alice, room, "a")
        await touch(store, alice, cursors: [(room, 1)], address: "127.0.0.1:40001", acknowledges: true)
        var recent: [StoreHarness.Session] = [alice]
        for index in 0..<4 {
            let (session, _) = await store.loggedIn("user\(index)@example.com")
            await touch(store, session, cursors: [], address: "[::1]:\(50000 + index)")
            recent.append(session)
        }
        // An old session: its last activity is before the cut-off.
        let old = StoreHarness.Session()
        _ = await store.call(old, .ensure(IPCEnsure()), create: true)
        try await store.execute("UPDATE sessions SET last_active_at = ? WHERE session_id = ?", [now - 1000, old.id])

        var loaded: [IPCLoadedSession] = []
        var after = ""
        var pages = 0
        repeat {
            let page = await store.service.handle(.loadSessions(activeSince: now - 100, after: after, limit: 2, edge: "")).loadedSessions
            loaded += page.sessions
            pages += 1
            after = page.sessions.last?.sessionID ?? ""
            if !page.more { break }
        } while pages < 10
        #expect(pages == 3)
        #expect(Set(loaded.map(\.sessionID)) == Set(recent.map(\.id)))
        #expect(loaded.map(\.sessionID) == loaded.map(\.sessionID).sorted())
        let first = try #require(loaded.first { $0.sessionID == alice.id })
        #expect(first.userID == user.userID && first.address == "127.0.0.1:40001" && first.acknowledges)
        #expect(first.cursors.map(\.roomID) == [room] && first.cursors.map(\.seq) == [1])
        #expect(loaded.filter { $0.address.hasPrefix("[::1]:") }.count == 4)
    }

    /// Several edges: the edge that heard a session last is recorded, a
    /// session heard by another edge is announced as moved, and an edge
    /// starting loads only its own sessions and those no edge claimed.
    @Test(arguments: TestDatabase.available) func eachEdgeLoadsTheSessionsItHeardLastAndAMoveIsAnnounced(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (a, _) = await store.loggedIn("a@example.com")
        let (b, _) = await store.loggedIn("b@example.com")
        let (unclaimed, _) = await store.loggedIn("c@example.com")
        var mark: UInt64 = 1_000
        func heard(_ session: StoreHarness.Session, by edge: String, stale: Bool = false) async -> [IPCEvent] {
            var activity = IPCSessionActivity()
            activity.sessionID = session.id
            activity.lastActiveAt = Int64(Date().timeIntervalSince1970)
            activity.edge = edge
            // Each report carries the replay mark its edge had; a stale one an older mark.
            mark += 10
            activity.replayMark = stale ? mark - 100 : mark
            activity.address = "127.0.0.1:\(stale ? 1 : 2)"
            _ = store.takeEvents()
            _ = await store.call(session, .touchSessions({ var touch = IPCTouchSessions(); touch.sessions = [activity]; return touch }()))
            return store.takeEvents()
        }
        func moves(_ events: [IPCEvent]) -> [String] {
            events.compactMap { if case .sessionMoved(let moved)? = $0.kind { "\(moved.sessionID == a.id ? "a" : moved.sessionID == b.id ? "b" : "?")@\(moved.edge)" } else { nil } }
        }
        #expect(moves(await heard(a, by: "edge-1")) == ["a@edge-1"])
        #expect(moves(await heard(b, by: "edge-2")) == ["b@edge-2"])
        #expect(moves(await heard(a, by: "edge-1")).isEmpty, "heard again by the same edge: no move")
        #expect(moves(await heard(a, by: "")).isEmpty, "a report without an edge claims nothing")
        #expect(moves(await heard(a, by: "edge-2")) == ["a@edge-2"])
        // A report edge-1 sent before edge-2 heard the session arrives late: it moves nothing.
        #expect(moves(await heard(a, by: "edge-1", stale: true)).isEmpty)
        let row = try #require(try await store.backend.read { tx in try tx.session(id: a.id) })
        #expect(row.address == "127.0.0.1:2", "nor does it bring back the old address")
        _ = await heard(a, by: "edge-1")

        func load(_ edge: String) async -> Set<String> {
            let request = IPCStoreRequest.loadSessions(activeSince: Int64(Date().timeIntervalSince1970) - 100, after: "", limit: 100, edge: edge)
            return Set(await store.service.handle(request).loadedSessions.sessions.map(\.sessionID))
        }
        #expect(await load("edge-1") == [a.id, unclaimed.id])
        #expect(await load("edge-2") == [b.id, unclaimed.id])
        #expect(await load("") == [a.id, b.id, unclaimed.id], "the only edge loads every session")
    }

    @Test func theMigrationMakesExistingSessionsFollowTheirRooms() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("udpchat-migrate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("old.db").path
        let queue = try DatabaseQueue(path: path)
        try Schema.migrator.migrate(queue, upTo: "0002_ai_jobs")
        try await queue.write { db in
            try db.execute(
                sql: """
                    INSERT INTO users (id, user_id, email, name, created_at, last_active_at) VALUES (1, 'u1', 'a@x.io', 'a', 0, 0);
                    INSERT INTO rooms (id, room_id, name, seq, created_at, last_active_at) VALUES (1, 'r1', 'One', 7, 0, 0);
                    INSERT INTO rooms (id, room_id, name, seq, created_at, last_active_at, closed_at) VALUES (2, 'r2', 'Gone', 3, 0, 0, 5);
                    INSERT INTO members (room_id, user_id, joined_at) VALUES (1, 1, 0), (2, 1, 0);
                    INSERT INTO sessions (id, session_id, user_id, wrapped_key, key_digest, created_at, last_active_at)
                        VALUES (1, 's1', 1, x'00', x'00', 0, 0), (2, 's2', NULL, x'00', x'00', 0, 0);
                    """)
        }
        try queue.close()
        let backend = try SQLiteBackend(path: path)
        let rows = try await backend.read { tx in (try tx.cursors(session: "s1"), try tx.cursors(session: "s2")) }
        #expect(rows.0.map(\.roomID) == ["r1"] && rows.0.map(\.seq) == [7])
        #expect(rows.1.isEmpty)
    }
}
