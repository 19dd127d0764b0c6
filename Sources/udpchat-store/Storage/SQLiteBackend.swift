import ChatWire
import Common
import Foundation
import GRDB

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
            guard level == 2 else { throw StoreFailure("PRAGMA synchronous is \(level ?? -1), expected 2 (FULL)") }
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

/// A store failure that is not the client's fault.
struct StoreFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// ``StoreTransaction`` over one GRDB connection. Statements are cached per connection.
struct SQLiteTransaction: StoreTransaction {
    let db: Database

    private func statement(_ sql: String) throws -> Statement { try db.cachedStatement(sql: sql) }

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

    private static let sessionColumns =
        "session_id, user_id, wrapped_key, key_digest, replay_mark, last_active_at, address, acknowledges"

    private func sessionRow(_ row: Row) -> SessionRow {
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
    private static let followedRooms = """
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
        ).map { row in
            var cursor = IPCRoomCursor()
            cursor.roomID = row[0]
            cursor.seq = UInt64(bitPattern: row[1])
            return cursor
        }
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

    // MARK: Users

    private static let userColumns = "id, user_id, email, name, password_hash, is_admin"

    private func userRow(_ row: Row) -> UserRow {
        UserRow(rowId: row[0], userId: row[1], email: row[2], name: row[3], passwordHash: row[4], isAdmin: row[5])
    }

    func user(email: String) throws -> UserRow? {
        try Row.fetchOne(statement("SELECT \(Self.userColumns) FROM users WHERE email = ?"), arguments: [email]).map(userRow)
    }

    func user(rowId: Int64) throws -> UserRow? {
        try Row.fetchOne(statement("SELECT \(Self.userColumns) FROM users WHERE id = ?"), arguments: [rowId]).map(userRow)
    }

    func insertUser(userId: String, email: String, name: String, now: Int64) throws -> UserRow {
        try statement("INSERT INTO users (user_id, email, name, created_at, last_active_at) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [userId, email, name, now, now])
        return UserRow(rowId: db.lastInsertedRowID, userId: userId, email: email, name: name, passwordHash: nil, isAdmin: false)
    }

    func touchUser(rowId: Int64, now: Int64) throws {
        try statement("UPDATE users SET last_active_at = ? WHERE id = ?").execute(arguments: [now, rowId])
    }

    func setPasswordHash(user: Int64, hash: String?) throws {
        try statement("UPDATE users SET password_hash = ? WHERE id = ?").execute(arguments: [hash, user])
    }

    func allUsers() throws -> [UserRow] {
        try Row.fetchAll(statement("SELECT \(Self.userColumns) FROM users ORDER BY email")).map(userRow)
    }

    func deleteUser(email: String) throws -> Int? {
        guard let user = try user(email: email) else { return nil }
        let messages = try Int.fetchOne(statement("SELECT count(*) FROM messages WHERE user_id = ?"), arguments: [user.rowId]) ?? 0
        try statement("DELETE FROM users WHERE id = ?").execute(arguments: [user.rowId])
        return messages
    }

    // MARK: Rooms

    private func roomRow(_ row: Row) -> RoomRow {
        RoomRow(rowId: row[0], roomId: row[1], name: row[2], lastActiveAt: row[3])
    }

    func room(roomId: String, member user: Int64) throws -> (room: RoomRow, isMember: Bool)? {
        try Row.fetchOne(
            statement(
                """
                SELECT id, room_id, name, last_active_at, EXISTS (SELECT 1 FROM members m WHERE m.room_id = rooms.id AND m.user_id = ?)
                FROM rooms WHERE room_id = ? AND closed_at IS NULL
                """),
            arguments: [user, roomId]
        ).map { (roomRow($0), $0[4]) }
    }

    func room(roomId: String) throws -> RoomRow? {
        try Row.fetchOne(
            statement("SELECT id, room_id, name, last_active_at FROM rooms WHERE room_id = ? AND closed_at IS NULL"),
            arguments: [roomId]
        ).map(roomRow)
    }

    func roomNameTaken(_ name: String) throws -> Bool {
        try Bool.fetchOne(
            statement("SELECT EXISTS (SELECT 1 FROM rooms WHERE name = ? AND closed_at IS NULL)"), arguments: [name]) ?? false
    }

    func insertRoom(roomId: String, name: String, now: Int64) throws -> RoomRow {
        try statement("INSERT INTO rooms (room_id, name, created_at, last_active_at) VALUES (?, ?, ?, ?)")
            .execute(arguments: [roomId, name, now, now])
        return RoomRow(rowId: db.lastInsertedRowID, roomId: roomId, name: name, lastActiveAt: now)
    }

    func publicRooms() throws -> [IPCRoomSummary] {
        try Row.fetchAll(
            statement("SELECT room_id, name, last_active_at FROM rooms WHERE closed_at IS NULL AND is_private = 0 ORDER BY id")
        ).map { row in
            var summary = IPCRoomSummary()
            summary.roomID = row[0]
            summary.name = row[1]
            summary.lastActiveAt = row[2]
            return summary
        }
    }

    func currentRoom(user: Int64) throws -> RoomRow? {
        try Row.fetchOne(
            statement(
                """
                SELECT r.id, r.room_id, r.name, r.last_active_at FROM rooms r JOIN members m ON m.room_id = r.id
                WHERE m.user_id = ? AND r.closed_at IS NULL ORDER BY r.last_active_at DESC, r.id DESC LIMIT 1
                """), arguments: [user]
        ).map(roomRow)
    }

    func touchRoom(_ room: Int64, now: Int64) throws {
        try statement("UPDATE rooms SET last_active_at = ? WHERE id = ?").execute(arguments: [now, room])
    }

    func nextSequence(room: Int64) throws -> UInt64 {
        try statement("UPDATE rooms SET seq = seq + 1 WHERE id = ?").execute(arguments: [room])
        return UInt64(try Int64.fetchOne(statement("SELECT seq FROM rooms WHERE id = ?"), arguments: [room]) ?? 0)
    }

    func closeRoom(_ room: Int64, now: Int64) throws {
        try statement("UPDATE rooms SET closed_at = ? WHERE id = ?").execute(arguments: [now, room])
    }

    // MARK: Members

    func isMember(room: Int64, user: Int64) throws -> Bool {
        try Bool.fetchOne(
            statement("SELECT EXISTS (SELECT 1 FROM members WHERE room_id = ? AND user_id = ?)"), arguments: [room, user]) ?? false
    }

    func addMember(room: Int64, user: Int64, isAdmin: Bool, now: Int64) throws {
        try statement("INSERT INTO members (room_id, user_id, is_admin, joined_at) VALUES (?, ?, ?, ?)")
            .execute(arguments: [room, user, isAdmin, now])
    }

    func removeMember(room: Int64, user: Int64) throws {
        try statement("DELETE FROM members WHERE room_id = ? AND user_id = ?").execute(arguments: [room, user])
    }

    func members(room: Int64) throws -> [IPCMemberItem] {
        try Row.fetchAll(
            statement(
                """
                SELECT u.user_id, u.name, m.is_admin, m.joined_at FROM members m JOIN users u ON u.id = m.user_id
                WHERE m.room_id = ? ORDER BY u.name, u.id
                """), arguments: [room]
        ).map { row in
            var member = IPCMemberItem()
            member.userID = row[0]
            member.name = row[1]
            member.isAdmin = row[2]
            member.joinedAt = row[3]
            return member
        }
    }

    func memberUserIds(room: Int64) throws -> [String] {
        try String.fetchAll(
            statement("SELECT u.user_id FROM members m JOIN users u ON u.id = m.user_id WHERE m.room_id = ?"), arguments: [room])
    }

    // MARK: Messages

    func insertMessage(room: Int64, user: Int64, content: String, isAnnouncement: Bool, now: Int64) throws -> Int64 {
        try statement("INSERT INTO messages (room_id, user_id, content, is_announcement, created_at) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [room, user, content, isAnnouncement, now])
        return db.lastInsertedRowID
    }

    func history(room: Int64, limit: Int) throws -> [IPCHistoryItem] {
        try Row.fetchAll(
            statement(
                """
                SELECT * FROM (
                    SELECT m.id, u.user_id, u.name, m.content, m.created_at FROM messages m JOIN users u ON u.id = m.user_id
                    WHERE m.room_id = ? ORDER BY m.id DESC LIMIT ?
                ) ORDER BY id
                """), arguments: [room, limit]
        ).map { row in
            var item = IPCHistoryItem()
            item.messageID = row[0]
            item.userID = row[1]
            item.name = row[2]
            item.content = row[3]
            item.timestamp = row[4]
            return item
        }
    }

    func latestMessage(room: Int64) throws -> (user: Int64, generated: Bool)? {
        guard
            let row = try Row.fetchOne(
                statement("SELECT user_id, is_announcement FROM messages WHERE room_id = ? ORDER BY id DESC LIMIT 1"), arguments: [room])
        else { return nil }
        return (row[0], row[1])
    }

    func context(room: Int64, limit: Int) throws -> [IPCContextMessage] {
        try Row.fetchAll(
            statement(
                """
                SELECT * FROM (
                    SELECT m.id, u.name, m.content, m.is_announcement FROM messages m JOIN users u ON u.id = m.user_id
                    WHERE m.room_id = ? ORDER BY m.id DESC LIMIT ?
                ) ORDER BY id
                """), arguments: [room, limit]
        ).map { row in
            var message = IPCContextMessage()
            message.name = row[1]
            message.content = row[2]
            message.generated = row[3]
            return message
        }
    }

    // MARK: AI jobs

    private static let jobColumns =
        "job_id, room_id, user_id, session_id, mode, request, state, created_at, deadline_at, leased_by, lease_until"

    private func jobRow(_ row: Row) -> JobRow {
        JobRow(
            jobId: row[0], roomRowId: row[1], userRowId: row[2], sessionId: row[3], mode: row[4], request: [UInt8](row[5] as Data),
            state: row[6], createdAt: row[7], deadlineAt: row[8], leasedBy: row[9], leaseUntil: row[10])
    }

    func insertJob(_ job: JobRow) throws {
        try statement(
            """
            INSERT INTO ai_jobs (job_id, room_id, user_id, session_id, mode, request, state, created_at, deadline_at, leased_by, lease_until)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """
        ).execute(arguments: [
            job.jobId, job.roomRowId, job.userRowId, job.sessionId, job.mode, Data(job.request), job.state, job.createdAt,
            job.deadlineAt, job.leasedBy, job.leaseUntil,
        ])
    }

    func renewJobLeases(run: String, jobIds: [String], until: Int64) throws -> Int {
        var renewed = 0
        let update = try statement("UPDATE ai_jobs SET lease_until = ? WHERE job_id = ? AND leased_by = ? AND state = 'queued'")
        for id in jobIds {
            try update.execute(arguments: [until, id, run])
            renewed += db.changesCount
        }
        return renewed
    }

    func claimJobs(run: String, now: Int64, until: Int64, limit: Int, all: Bool) throws -> [JobRow] {
        // One writer at a time: the select and the update see the same rows.
        let rows = try Row.fetchAll(
            statement(
                """
                SELECT \(Self.jobColumns) FROM ai_jobs
                WHERE state = 'queued' AND ((? AND leased_by != ?) OR lease_until < ?) ORDER BY id LIMIT ?
                """), arguments: [all, run, now, limit]
        ).map(jobRow)
        for row in rows {
            try statement("UPDATE ai_jobs SET leased_by = ?, lease_until = ? WHERE job_id = ?").execute(arguments: [run, until, row.jobId])
        }
        return rows.map { var row = $0; row.leasedBy = run; row.leaseUntil = until; return row }
    }

    func job(id: String) throws -> JobRow? {
        try Row.fetchOne(statement("SELECT \(Self.jobColumns) FROM ai_jobs WHERE job_id = ?"), arguments: [id]).map(jobRow)
    }

    func queuedJobs() throws -> [JobRow] {
        try Row.fetchAll(statement("SELECT \(Self.jobColumns) FROM ai_jobs WHERE state = 'queued' ORDER BY id")).map(jobRow)
    }

    func hasQueuedJob(room: Int64, user: Int64, mode: String) throws -> Bool {
        try Bool.fetchOne(
            statement("SELECT EXISTS (SELECT 1 FROM ai_jobs WHERE room_id = ? AND user_id = ? AND mode = ? AND state = 'queued')"),
            arguments: [room, user, mode]) ?? false
    }

    func deleteEndedJobs(before cutoff: Int64) throws -> Int {
        try statement("DELETE FROM ai_jobs WHERE state != 'queued' AND finished_at < ?").execute(arguments: [cutoff])
        return db.changesCount
    }

    func finishJob(id: String, state: String, messageId: Int64?, error: String?, now: Int64) throws -> Bool {
        try statement(
            "UPDATE ai_jobs SET state = ?, message_id = ?, error = ?, finished_at = ? WHERE job_id = ? AND state = 'queued'"
        ).execute(arguments: [state, messageId, error, now, id])
        return db.changesCount == 1
    }
}
