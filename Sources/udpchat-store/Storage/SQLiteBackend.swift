import ChatWire
import Foundation
import GRDB
import IPCMessages

/// SQLite through GRDB: one file in WAL mode, readers in parallel with the
/// single writer, `synchronous = FULL` so a commit survives a power cut.
final class SQLiteBackend: StorageBackend {
    let pool: DatabasePool

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    init(path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(5)
        pool = try DatabasePool(path: path, configuration: configuration)
        // DatabasePool sets synchronous = NORMAL when it enables WAL, after
        // prepareDatabase runs, so FULL is set here and checked.
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            let level = try Int.fetchOne(db, sql: "PRAGMA synchronous")
            guard level == 2 else { throw ChatError.storage("PRAGMA synchronous is \(level ?? -1), expected 2 (FULL)") }
        }
        try Schema.migrator.migrate(pool)
    }

    /// Applies pending migrations; returns the names applied now and all applied.
    static func migrate(path: String) throws -> (applied: [String], all: [String]) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let pool = try DatabasePool(path: path)
        let before = try pool.read { try Schema.migrator.appliedMigrations($0) }
        try Schema.migrator.migrate(pool)
        let after = try pool.read { try Schema.migrator.appliedMigrations($0) }
        return (after.filter { !before.contains($0) }, after)
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await pool.read { db in try body(SQLiteTransaction(db: db)) }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await pool.write { db in try body(SQLiteTransaction(db: db)) }
    }
}

extension ChatError.Code {
    /// The database or its files failed, or an operator's command cannot be
    /// carried out; not the client's fault.
    static let storage = ChatError.Code("storage")
}

extension ChatError {
    static func storage(_ message: String) -> ChatError { ChatError(.storage, message) }
}

/// ``StoreTransaction`` over one GRDB connection. Statements are cached per connection.
struct SQLiteTransaction: StoreTransaction {
    let db: Database

    func statement(_ sql: String) throws -> Statement { try db.cachedStatement(sql: sql) }

    func inSavepoint<T>(_ body: () throws -> (value: T, keep: Bool)) throws -> T {
        var result: T?
        try db.inSavepoint {
            let outcome = try body()
            result = outcome.value
            return outcome.keep ? .commit : .rollback
        }
        return result!
    }

    // MARK: Sessions

    static let sessionColumns =
        "session_id, user_id, wrapped_key, key_digest, replay_mark, last_active_at, address, acknowledges"

    func sessionRow(_ row: Row) -> SessionRow {
        SessionRow(
            sessionId: row[0], userRowId: row[1], wrappedKey: [UInt8](row[2] as Data), keyDigest: [UInt8](row[3] as Data),
            replayMark: UInt64(bitPattern: row[4]), lastActiveAt: row[5], address: row[6], acknowledges: row[7])
    }

    func session(id: String) throws -> SessionRow? {
        try Row.fetchOne(statement("SELECT \(Self.sessionColumns) FROM sessions WHERE session_id = ?"), arguments: [id])
            .map(sessionRow)
    }

    func sessionWithUser(id: String) throws -> (session: SessionRow, user: UserRow?)? {
        guard
            let row = try Row.fetchOne(
                statement(
                    """
                    SELECT s.session_id, s.user_id, s.wrapped_key, s.key_digest, s.replay_mark, s.last_active_at, s.address, s.acknowledges,
                        u.id, u.user_id, u.email, u.name, u.password_hash, u.is_admin
                    FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.session_id = ?
                    """), arguments: [id])
        else { return nil }
        let userRowId: Int64? = row[8]
        return (sessionRow(row), userRowId.map { UserRow(rowId: $0, userId: row[9], email: row[10], name: row[11], passwordHash: row[12], isAdmin: row[13]) })
    }

    func insertSession(id: String, wrappedKey: [UInt8], keyDigest: [UInt8], replayMark: UInt64, now: Int64) throws {
        try statement(
            """
            INSERT INTO sessions (session_id, wrapped_key, key_digest, replay_mark, created_at, last_active_at)
            VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO NOTHING
            """
        ).execute(arguments: [id, Data(wrappedKey), Data(keyDigest), Int64(bitPattern: replayMark), now, now])
    }

    func setSessionUser(id: String, user: Int64?, now: Int64) throws {
        try statement("UPDATE sessions SET user_id = ?, last_active_at = max(last_active_at, ?) WHERE session_id = ?")
            .execute(arguments: [user, now, id])
    }

    func deleteSessions(lastActiveBefore cutoff: Int64) throws -> Int {
        try statement("DELETE FROM sessions WHERE last_active_at < ?").execute(arguments: [cutoff])
        return db.changesCount
    }

    func recordActivity(_ activity: IPCSessionActivity) throws -> Bool {
        // Only a report at least as new as the last one moves the session
        // (one still on its way from the edge that had it does not).
        let moved = try !activity.edge.isEmpty && Row.fetchOne(
            statement("UPDATE sessions SET edge = ? WHERE session_id = ? AND edge <> ? AND ? >= replay_mark RETURNING 1"),
            arguments: [activity.edge, activity.sessionID, activity.edge, Int64(bitPattern: activity.replayMark)]) != nil
        try statement(
            """
            UPDATE sessions SET last_active_at = max(last_active_at, ?), replay_mark = max(replay_mark, ?),
                address = CASE WHEN ? = '' OR ? < replay_mark THEN address ELSE ? END, acknowledges = max(acknowledges, ?)
            WHERE session_id = ?
            """
        ).execute(arguments: [
            activity.lastActiveAt, Int64(bitPattern: activity.replayMark), activity.address, Int64(bitPattern: activity.replayMark),
            activity.address, activity.acknowledges, activity.sessionID,
        ])
        guard !activity.cursors.isEmpty else { return moved }
        let upsert = try statement(
            """
            INSERT INTO session_cursors (session_id, room_id, seq)
                SELECT s.id, r.id, ? FROM sessions s
                JOIN rooms r ON r.room_id = ?
                JOIN members m ON m.room_id = r.id AND m.user_id = s.user_id
                WHERE s.session_id = ?
            ON CONFLICT (session_id, room_id) DO UPDATE SET seq = max(seq, excluded.seq)
            """)
        for cursor in activity.cursors {
            try upsert.execute(arguments: [Int64(bitPattern: cursor.seq), cursor.roomID, activity.sessionID])
        }
        return moved
    }

    func activeSessions(since: Int64, after: String, limit: Int, edge: String) throws -> [SessionRow] {
        try Row.fetchAll(
            statement(
                """
                SELECT \(Self.sessionColumns) FROM sessions WHERE last_active_at >= ? AND session_id > ? AND (? = '' OR edge IN (?, ''))
                ORDER BY session_id LIMIT ?
                """),
            arguments: [since, after, edge, edge, limit]
        ).map(sessionRow)
    }

    // MARK: Delivery cursors

    /// The open rooms of the session's user, from their current sequence numbers.
    static let followedRooms = """
        SELECT s.id, r.id, r.seq FROM sessions s
        JOIN members m ON m.user_id = s.user_id
        JOIN rooms r ON r.id = m.room_id AND r.closed_at IS NULL
        WHERE s.session_id = ?
        """

    func resetCursors(session: String) throws {
        try statement("DELETE FROM session_cursors WHERE session_id = (SELECT id FROM sessions WHERE session_id = ?)")
            .execute(arguments: [session])
        try addMissingCursors(session: session)
    }

    func addMissingCursors(session: String) throws {
        try statement("INSERT OR IGNORE INTO session_cursors (session_id, room_id, seq) \(Self.followedRooms)")
            .execute(arguments: [session])
    }

    func follow(room: Int64, user: Int64, after seq: UInt64) throws {
        try statement(
            """
            INSERT INTO session_cursors (session_id, room_id, seq) SELECT id, ?, ? FROM sessions WHERE user_id = ?
            ON CONFLICT (session_id, room_id) DO UPDATE SET seq = excluded.seq
            """
        ).execute(arguments: [room, Int64(bitPattern: seq), user])
    }

    func unfollow(room: Int64, user: Int64) throws {
        try statement("DELETE FROM session_cursors WHERE room_id = ? AND session_id IN (SELECT id FROM sessions WHERE user_id = ?)")
            .execute(arguments: [room, user])
    }

    func cursors(session: String) throws -> [IPCRoomCursor] {
        try Row.fetchAll(
            statement(
                """
                SELECT r.room_id, c.seq FROM session_cursors c JOIN rooms r ON r.id = c.room_id
                WHERE c.session_id = (SELECT id FROM sessions WHERE session_id = ?) AND r.closed_at IS NULL ORDER BY r.id
                """), arguments: [session]
        ).map { row in IPCRoomCursor(roomId: row[0], seq: UInt64(bitPattern: row[1])) }
    }

    // MARK: Room event log

    func appendRoomEvent(room: Int64, seq: UInt64, body: [UInt8], now: Int64) throws {
        try statement("INSERT INTO room_events (room_id, seq, body, created_at) VALUES (?, ?, ?, ?)")
            .execute(arguments: [room, Int64(bitPattern: seq), Data(body), now])
    }

    func roomEvents(roomId: String, after seq: UInt64, limit: Int) throws -> RoomEventRange? {
        guard let room = try Row.fetchOne(statement("SELECT id, seq, closed_at IS NOT NULL FROM rooms WHERE room_id = ?"), arguments: [roomId])
        else { return nil }
        let rowId: Int64 = room[0]
        let bodies = try Data.fetchAll(
            statement("SELECT body FROM room_events WHERE room_id = ? AND seq > ? ORDER BY seq LIMIT ?"),
            arguments: [rowId, Int64(bitPattern: seq), limit])
        return RoomEventRange(head: UInt64(bitPattern: room[1]), closed: room[2], bodies: bodies.map { [UInt8]($0) })
    }

    func deleteRoomEvents(before cutoff: Int64) throws -> Int {
        try statement("DELETE FROM room_events WHERE created_at < ?").execute(arguments: [cutoff])
        return db.changesCount
    }

    // MARK: Request results

    func requestResult(session: String, nonce: [UInt8]) throws -> [UInt8]? {
        let data = try Data.fetchOne(
            statement(
                "SELECT r.response FROM request_results r JOIN sessions s ON s.id = r.session_id WHERE s.session_id = ? AND r.nonce = ?"),
            arguments: [session, Data(nonce)])
        return data.map { [UInt8]($0) }
    }

    func recordRequestResult(session: String, nonce: [UInt8], response: [UInt8], now: Int64) throws {
        try statement(
            """
            INSERT OR IGNORE INTO request_results (session_id, nonce, response, created_at)
                SELECT id, ?, ?, ? FROM sessions WHERE session_id = ?
            """
        ).execute(arguments: [Data(nonce), Data(response), now, session])
    }

    func deleteRequestResults(before cutoff: Int64) throws -> Int {
        try statement("DELETE FROM request_results WHERE created_at < ?").execute(arguments: [cutoff])
        return db.changesCount
    }
}
