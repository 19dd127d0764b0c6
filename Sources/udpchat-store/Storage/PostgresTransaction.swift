import ChatWire
import Foundation
import IPCMessages
import NIOConcurrencyHelpers
import PostgresNIO

/// ``StoreTransaction`` over one PostgreSQL connection: the statements of
/// ``SQLiteTransaction`` in PostgreSQL's words (`$n` binds through string
/// interpolation, `GREATEST` for SQLite's two-argument `max`, `RETURNING`
/// for the new row id, booleans as booleans).
struct PostgresTransaction: StoreTransaction {
    let pipeline: PostgresPipeline

    func rows(_ query: PostgresQuery) throws -> [PostgresRow] { try pipeline.run(query).rows }
    /// A statement whose changed-row count is read: sent and awaited.
    func execute(_ query: PostgresQuery) throws -> Int { try pipeline.run(query).changed }
    /// A statement nobody reads the answer of: queued, sent with the next
    /// one awaited (a failure shows there, or when the savepoint ends).
    func send(_ query: PostgresQuery) { pipeline.send(query) }

    static let savepoints = NIOLockedValueBox(0)

    /// What the body queued is settled before the savepoint is kept, so a
    /// failure in it undoes this savepoint and not the next.
    func inSavepoint<T>(_ body: () throws -> (value: T, keep: Bool)) throws -> T {
        let name = "s\(Self.savepoints.withLockedValue { $0 += 1; return $0 })"
        let start = pipeline.mark
        try send("SAVEPOINT \(unescaped: name)")
        let outcome: (value: T, keep: Bool)
        do {
            outcome = try body()
            if outcome.keep { try pipeline.settle() }
        } catch {
            let failure = error
            if pipeline.discard(since: start) {
                do {
                    try pipeline.rollback("ROLLBACK TO SAVEPOINT \(unescaped: name)")
                } catch {
                    // The savepoint never took (the transaction had failed
                    // before it): the first failure says why.
                    throw failure
                }
            }
            throw failure
        }
        // A kept savepoint is left to the commit to release: one round trip less.
        if !outcome.keep, pipeline.discard(since: start) { try pipeline.rollback("ROLLBACK TO SAVEPOINT \(unescaped: name)") }
        return outcome.value
    }

    // MARK: Sessions

    static let sessionColumns =
        "session_id, user_id, wrapped_key, key_digest, replay_mark, last_active_at, address, acknowledges"

    func sessionRow(_ row: PostgresRow) throws -> SessionRow {
        let (id, user, key, digest, mark, active, address, acknowledges) = try row.decode(
            (String, Int64?, Data, Data, Int64, Int64, String, Bool).self)
        return SessionRow(
            sessionId: id, userRowId: user, wrappedKey: [UInt8](key), keyDigest: [UInt8](digest), replayMark: UInt64(bitPattern: mark),
            lastActiveAt: active, address: address, acknowledges: acknowledges)
    }

    func session(id: String) throws -> SessionRow? {
        try rows("SELECT \(unescaped: Self.sessionColumns) FROM sessions WHERE session_id = \(id)").first.map(sessionRow)
    }

    func sessionWithUser(id: String) throws -> (session: SessionRow, user: UserRow?)? {
        guard
            let row = try rows(
                """
                SELECT s.session_id, s.user_id, s.wrapped_key, s.key_digest, s.replay_mark, s.last_active_at, s.address, s.acknowledges,
                    u.id, u.user_id, u.email, u.name, u.password_hash, u.is_admin
                FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.session_id = \(id)
                """
            ).first
        else { return nil }
        let (id, user, key, digest, mark, active, address, acknowledges, rowId, userId, email, name, hash, isAdmin) = try row.decode(
            (String, Int64?, Data, Data, Int64, Int64, String, Bool, Int64?, String?, String?, String?, String?, Bool?).self)
        let session = SessionRow(
            sessionId: id, userRowId: user, wrappedKey: [UInt8](key), keyDigest: [UInt8](digest), replayMark: UInt64(bitPattern: mark),
            lastActiveAt: active, address: address, acknowledges: acknowledges)
        guard let rowId, let userId, let email, let name, let isAdmin else { return (session, nil) }
        return (session, UserRow(rowId: rowId, userId: userId, email: email, name: name, passwordHash: hash, isAdmin: isAdmin))
    }

    func insertSession(id: String, wrappedKey: [UInt8], keyDigest: [UInt8], replayMark: UInt64, now: Int64) throws {
        try send(
            """
            INSERT INTO sessions (session_id, wrapped_key, key_digest, replay_mark, created_at, last_active_at)
            VALUES (\(id), \(Data(wrappedKey)), \(Data(keyDigest)), \(Int64(bitPattern: replayMark)), \(now), \(now))
            ON CONFLICT (session_id) DO NOTHING
            """)
    }

    func setSessionUser(id: String, user: Int64?, now: Int64) throws {
        try send("UPDATE sessions SET user_id = \(user), last_active_at = GREATEST(last_active_at, \(now)) WHERE session_id = \(id)")
    }

    func deleteSessions(lastActiveBefore cutoff: Int64) throws -> Int {
        try execute("DELETE FROM sessions WHERE last_active_at < \(cutoff)")
    }

    func recordActivity(_ activity: IPCSessionActivity) throws -> Bool {
        let mark = Int64(bitPattern: activity.replayMark)
        // Only a report at least as new as the last one moves the session
        // (one still on its way from the edge that had it does not).
        let moved = try !activity.edge.isEmpty && !rows(
            """
            UPDATE sessions SET edge = \(activity.edge)
            WHERE session_id = \(activity.sessionID) AND edge <> \(activity.edge) AND \(mark) >= replay_mark RETURNING 1
            """
        ).isEmpty
        try send(
            """
            UPDATE sessions SET last_active_at = GREATEST(last_active_at, \(activity.lastActiveAt)),
                address = CASE WHEN \(activity.address) = '' OR \(mark) < replay_mark THEN address ELSE \(activity.address) END,
                replay_mark = GREATEST(replay_mark, \(mark)),
                acknowledges = acknowledges OR \(activity.acknowledges)
            WHERE session_id = \(activity.sessionID)
            """)
        guard !activity.cursors.isEmpty else { return moved }
        // One statement for every cursor of the session: rooms and seqs as
        // arrays (a room named twice counts once, at its highest).
        var highest: [String: UInt64] = [:]
        for cursor in activity.cursors { highest[cursor.roomID] = max(highest[cursor.roomID] ?? 0, cursor.seq) }
        let rooms = Array(highest.keys)
        let seqs = rooms.map { Int64(bitPattern: highest[$0]!) }
        try send(
            """
            INSERT INTO session_cursors (session_id, room_id, seq)
                SELECT s.id, r.id, c.seq FROM sessions s
                JOIN unnest(\(rooms)::text[], \(seqs)::bigint[]) AS c(room_id, seq) ON true
                JOIN rooms r ON r.room_id = c.room_id
                JOIN members m ON m.room_id = r.id AND m.user_id = s.user_id
                WHERE s.session_id = \(activity.sessionID)
            ON CONFLICT (session_id, room_id) DO UPDATE SET seq = GREATEST(session_cursors.seq, excluded.seq)
            """)
        return moved
    }

    func activeSessions(since: Int64, after: String, limit: Int, edge: String) throws -> [SessionRow] {
        try rows(
            """
            SELECT \(unescaped: Self.sessionColumns) FROM sessions WHERE last_active_at >= \(since) AND session_id > \(after)
                AND (\(edge) = '' OR edge IN (\(edge), ''))
            ORDER BY session_id LIMIT \(Int64(limit))
            """
        ).map(sessionRow)
    }

    // MARK: Delivery cursors

    func resetCursors(session: String) throws {
        try send("DELETE FROM session_cursors WHERE session_id = (SELECT id FROM sessions WHERE session_id = \(session))")
        try addMissingCursors(session: session)
    }

    func addMissingCursors(session: String) throws {
        try send(
            """
            INSERT INTO session_cursors (session_id, room_id, seq)
                SELECT s.id, r.id, r.seq FROM sessions s
                JOIN members m ON m.user_id = s.user_id
                JOIN rooms r ON r.id = m.room_id AND r.closed_at IS NULL
                WHERE s.session_id = \(session)
            ON CONFLICT DO NOTHING
            """)
    }

    func follow(room: Int64, user: Int64, after seq: UInt64) throws {
        try send(
            """
            INSERT INTO session_cursors (session_id, room_id, seq) SELECT id, \(room), \(Int64(bitPattern: seq)) FROM sessions WHERE user_id = \(user)
            ON CONFLICT (session_id, room_id) DO UPDATE SET seq = excluded.seq
            """)
    }

    func unfollow(room: Int64, user: Int64) throws {
        try send("DELETE FROM session_cursors WHERE room_id = \(room) AND session_id IN (SELECT id FROM sessions WHERE user_id = \(user))")
    }

    func cursors(session: String) throws -> [IPCRoomCursor] {
        try rows(
            """
            SELECT r.room_id, c.seq FROM session_cursors c JOIN rooms r ON r.id = c.room_id
            WHERE c.session_id = (SELECT id FROM sessions WHERE session_id = \(session)) AND r.closed_at IS NULL ORDER BY r.id
            """
        ).map { row in
            let (roomId, seq) = try row.decode((String, Int64).self)
            return IPCRoomCursor(roomId: roomId, seq: UInt64(bitPattern: seq))
        }
    }

    // MARK: Room event log

    func appendRoomEvent(room: Int64, seq: UInt64, body: [UInt8], now: Int64) throws {
        try send("INSERT INTO room_events (room_id, seq, body, created_at) VALUES (\(room), \(Int64(bitPattern: seq)), \(Data(body)), \(now))")
    }

    func roomEvents(roomId: String, after seq: UInt64, limit: Int) throws -> RoomEventRange? {
        guard let room = try rows("SELECT id, seq, closed_at IS NOT NULL FROM rooms WHERE room_id = \(roomId)").first else { return nil }
        let (rowId, head, closed) = try room.decode((Int64, Int64, Bool).self)
        let bodies = try rows(
            "SELECT body FROM room_events WHERE room_id = \(rowId) AND seq > \(Int64(bitPattern: seq)) ORDER BY seq LIMIT \(Int64(limit))"
        ).map { [UInt8](try $0.decode(Data.self)) }
        return RoomEventRange(head: UInt64(bitPattern: head), closed: closed, bodies: bodies)
    }

    func deleteRoomEvents(before cutoff: Int64) throws -> Int {
        try execute("DELETE FROM room_events WHERE created_at < \(cutoff)")
    }

    // MARK: Request results

    func requestResult(session: String, nonce: [UInt8]) throws -> [UInt8]? {
        // The same request taken by another store at the same time runs in
        // a writing transaction too, which waits for this one to commit
        // (PostgresLink.writerLock), then finds this one's answer.
        try rows(
            """
            SELECT r.response FROM request_results r JOIN sessions s ON s.id = r.session_id
            WHERE s.session_id = \(session) AND r.nonce = \(Data(nonce))
            """
        ).first.map { [UInt8](try $0.decode(Data.self)) }
    }

    func recordRequestResult(session: String, nonce: [UInt8], response: [UInt8], now: Int64) throws {
        try send(
            """
            INSERT INTO request_results (session_id, nonce, response, created_at)
                SELECT id, \(Data(nonce)), \(Data(response)), \(now) FROM sessions WHERE session_id = \(session)
            ON CONFLICT DO NOTHING
            """)
    }

    func deleteRequestResults(before cutoff: Int64) throws -> Int {
        try execute("DELETE FROM request_results WHERE created_at < \(cutoff)")
    }
}
