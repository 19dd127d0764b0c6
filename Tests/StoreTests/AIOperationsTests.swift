import ChatWire
import IPCMessages
import Testing

@testable import udpchat_store

@Suite struct AIRequestTests {
    func requestAI(_ store: StoreHarness, _ session: StoreHarness.Session, _ roomId: String, _ content: String) async -> IPCStoreResponse {
        var request = IPCRequestAI()
        request.roomID = roomId
        request.content = content
        return await store.call(session, .requestAi(request))
    }

    /// alice in a room of her own with two AI jobs queued (the drafts given).
    func twoQueuedJobs(_ store: StoreHarness, _ drafts: (String, String)) async throws
        -> (alice: StoreHarness.Session, user: IPCUserInfo, room: IPCRoomRef, jobs: [JobRow])
    {
        let (alice, user) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated
        _ = await requestAI(store, alice, room.roomID, drafts.0)
        _ = await requestAI(store, alice, room.roomID, drafts.1)
        return (alice, user, room, try await store.backend.read { tx in try tx.queuedJobs() })
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
        let (alice, user, room, jobs) = try await twoQueuedJobs(store, ("", "second"))
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
        let (_, _, _, jobs) = try await twoQueuedJobs(store, ("one", "two"))
        _ = try await store.backend.write { tx in try Operations.failJob(tx, jobId: jobs[0].jobId, reason: "x.", nowMs: 1) }
        _ = await store.service.expireIdleSessions()
        let left = try await store.count("ai_jobs")
        #expect(left == 1)
        #expect(try await store.backend.read { tx in try tx.queuedJobs() }.map(\.jobId) == [jobs[1].jobId])
    }
}
