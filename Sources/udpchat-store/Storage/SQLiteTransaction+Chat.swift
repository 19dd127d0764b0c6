import ChatWire
import Foundation
import GRDB
import IPCMessages

/// Users, rooms, members, messages and AI jobs on SQLite (sessions and
/// delivery state are in SQLiteBackend.swift).
extension SQLiteTransaction {
    // MARK: Users

    static let userColumns = "id, user_id, email, name, password_hash, is_admin"

    func userRow(_ row: Row) -> UserRow {
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

    func roomRow(_ row: Row) -> RoomRow {
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

    static let jobColumns =
        "job_id, room_id, user_id, session_id, mode, request, state, created_at, deadline_at, leased_by, lease_until"

    func jobRow(_ row: Row) -> JobRow {
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
