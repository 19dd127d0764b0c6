import ChatWire
import Foundation
import IPCMessages
import Testing

@testable import udpchat_store

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
