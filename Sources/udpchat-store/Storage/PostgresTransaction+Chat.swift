import ChatWire
import Foundation
import IPCMessages
import NIOConcurrencyHelpers
import PostgresNIO

/// Users, rooms, members, messages and AI jobs on PostgreSQL (sessions and
/// delivery state are in PostgresTransaction.swift).
extension PostgresTransaction {
    // MARK: Users

    static let userColumns = "id, user_id, email, name, password_hash, is_admin"

    func userRow(_ row: PostgresRow) throws -> UserRow {
        let (rowId, userId, email, name, hash, isAdmin) = try row.decode((Int64, String, String, String, String?, Bool).self)
        return UserRow(rowId: rowId, userId: userId, email: email, name: name, passwordHash: hash, isAdmin: isAdmin)
    }

    func user(email: String) throws -> UserRow? {
        try rows("SELECT \(unescaped: Self.userColumns) FROM users WHERE email = \(email)").first.map(userRow)
    }

    func user(rowId: Int64) throws -> UserRow? {
        try rows("SELECT \(unescaped: Self.userColumns) FROM users WHERE id = \(rowId)").first.map(userRow)
    }

    func insertUser(userId: String, email: String, name: String, now: Int64) throws -> UserRow {
        let row = try rows(
            "INSERT INTO users (user_id, email, name, created_at, last_active_at) VALUES (\(userId), \(email), \(name), \(now), \(now)) RETURNING id")
        guard let id = try row.first?.decode(Int64.self) else { throw ChatError.storage("PostgreSQL returned no id for a new user") }
        return UserRow(rowId: id, userId: userId, email: email, name: name, passwordHash: nil, isAdmin: false)
    }

    func touchUser(rowId: Int64, now: Int64) throws {
        try send("UPDATE users SET last_active_at = \(now) WHERE id = \(rowId)")
    }

    func setPasswordHash(user: Int64, hash: String?) throws {
        try send("UPDATE users SET password_hash = \(hash) WHERE id = \(user)")
    }

    func allUsers() throws -> [UserRow] {
        try rows("SELECT \(unescaped: Self.userColumns) FROM users ORDER BY email").map(userRow)
    }

    func deleteUser(email: String) throws -> Int? {
        guard let user = try user(email: email) else { return nil }
        let messages = try rows("SELECT count(*) FROM messages WHERE user_id = \(user.rowId)").first?.decode(Int64.self) ?? 0
        try send("DELETE FROM users WHERE id = \(user.rowId)")
        return Int(messages)
    }

    // MARK: Rooms

    func roomRow(_ row: PostgresRow) throws -> RoomRow {
        let (rowId, roomId, name, active) = try row.decode((Int64, String, String, Int64).self)
        return RoomRow(rowId: rowId, roomId: roomId, name: name, lastActiveAt: active)
    }

    func room(roomId: String, member user: Int64) throws -> (room: RoomRow, isMember: Bool)? {
        guard
            let row = try rows(
                """
                SELECT id, room_id, name, last_active_at, EXISTS (SELECT 1 FROM members m WHERE m.room_id = rooms.id AND m.user_id = \(user))
                FROM rooms WHERE room_id = \(roomId) AND closed_at IS NULL
                """
            ).first
        else { return nil }
        let (rowId, roomId, name, active, isMember) = try row.decode((Int64, String, String, Int64, Bool).self)
        return (RoomRow(rowId: rowId, roomId: roomId, name: name, lastActiveAt: active), isMember)
    }

    func room(roomId: String) throws -> RoomRow? {
        try rows("SELECT id, room_id, name, last_active_at FROM rooms WHERE room_id = \(roomId) AND closed_at IS NULL").first.map(roomRow)
    }

    func roomNameTaken(_ name: String) throws -> Bool {
        try !rows("SELECT 1 FROM rooms WHERE name = \(name) AND closed_at IS NULL").isEmpty
    }

    func insertRoom(roomId: String, name: String, now: Int64) throws -> RoomRow {
        let row = try rows(
            "INSERT INTO rooms (room_id, name, created_at, last_active_at) VALUES (\(roomId), \(name), \(now), \(now)) RETURNING id")
        guard let id = try row.first?.decode(Int64.self) else { throw ChatError.storage("PostgreSQL returned no id for a new room") }
        return RoomRow(rowId: id, roomId: roomId, name: name, lastActiveAt: now)
    }

    func publicRooms() throws -> [IPCRoomSummary] {
        try rows("SELECT room_id, name, last_active_at FROM rooms WHERE closed_at IS NULL AND NOT is_private ORDER BY id").map { row in
            let (roomId, name, active) = try row.decode((String, String, Int64).self)
            var summary = IPCRoomSummary()
            summary.roomID = roomId
            summary.name = name
            summary.lastActiveAt = active
            return summary
        }
    }

    func currentRoom(user: Int64) throws -> RoomRow? {
        try rows(
            """
            SELECT r.id, r.room_id, r.name, r.last_active_at FROM rooms r JOIN members m ON m.room_id = r.id
            WHERE m.user_id = \(user) AND r.closed_at IS NULL ORDER BY r.last_active_at DESC, r.id DESC LIMIT 1
            """
        ).first.map(roomRow)
    }

    func touchRoom(_ room: Int64, now: Int64) throws {
        try send("UPDATE rooms SET last_active_at = \(now) WHERE id = \(room)")
    }

    func nextSequence(room: Int64) throws -> UInt64 {
        // The row lock this takes is held to commit: another writer's next
        // number waits for this transaction, so numbers follow commit order.
        let row = try rows("UPDATE rooms SET seq = seq + 1 WHERE id = \(room) RETURNING seq")
        return UInt64(bitPattern: try row.first?.decode(Int64.self) ?? 0)
    }

    func closeRoom(_ room: Int64, now: Int64) throws {
        try send("UPDATE rooms SET closed_at = \(now) WHERE id = \(room)")
    }

    // MARK: Members

    func isMember(room: Int64, user: Int64) throws -> Bool {
        try !rows("SELECT 1 FROM members WHERE room_id = \(room) AND user_id = \(user)").isEmpty
    }

    func addMember(room: Int64, user: Int64, isAdmin: Bool, now: Int64) throws {
        try send("INSERT INTO members (room_id, user_id, is_admin, joined_at) VALUES (\(room), \(user), \(isAdmin), \(now))")
    }

    func removeMember(room: Int64, user: Int64) throws {
        try send("DELETE FROM members WHERE room_id = \(room) AND user_id = \(user)")
    }

    func members(room: Int64) throws -> [IPCMemberItem] {
        try rows(
            """
            SELECT u.user_id, u.name, m.is_admin, m.joined_at FROM members m JOIN users u ON u.id = m.user_id
            WHERE m.room_id = \(room) ORDER BY u.name, u.id
            """
        ).map { row in
            let (userId, name, isAdmin, joined) = try row.decode((String, String, Bool, Int64).self)
            var member = IPCMemberItem()
            member.userID = userId
            member.name = name
            member.isAdmin = isAdmin
            member.joinedAt = joined
            return member
        }
    }

    func memberUserIds(room: Int64) throws -> [String] {
        try rows("SELECT u.user_id FROM members m JOIN users u ON u.id = m.user_id WHERE m.room_id = \(room)").map { try $0.decode(String.self) }
    }

    // MARK: Messages

    func insertMessage(room: Int64, user: Int64, content: String, isAnnouncement: Bool, now: Int64) throws -> Int64 {
        let row = try rows(
            """
            INSERT INTO messages (room_id, user_id, content, is_announcement, created_at)
            VALUES (\(room), \(user), \(content), \(isAnnouncement), \(now)) RETURNING id
            """)
        guard let id = try row.first?.decode(Int64.self) else { throw ChatError.storage("PostgreSQL returned no id for a new message") }
        return id
    }

    func history(room: Int64, limit: Int) throws -> [IPCHistoryItem] {
        try rows(
            """
            SELECT * FROM (
                SELECT m.id, u.user_id, u.name, m.content, m.created_at FROM messages m JOIN users u ON u.id = m.user_id
                WHERE m.room_id = \(room) ORDER BY m.id DESC LIMIT \(Int64(limit))
            ) newest ORDER BY id
            """
        ).map { row in
            let (id, userId, name, content, created) = try row.decode((Int64, String, String, String, Int64).self)
            var item = IPCHistoryItem()
            item.messageID = id
            item.userID = userId
            item.name = name
            item.content = content
            item.timestamp = created
            return item
        }
    }

    func latestMessage(room: Int64) throws -> (user: Int64, generated: Bool)? {
        guard let row = try rows("SELECT user_id, is_announcement FROM messages WHERE room_id = \(room) ORDER BY id DESC LIMIT 1").first
        else { return nil }
        let (user, generated) = try row.decode((Int64, Bool).self)
        return (user, generated)
    }

    func context(room: Int64, limit: Int) throws -> [IPCContextMessage] {
        try rows(
            """
            SELECT * FROM (
                SELECT m.id, u.name, m.content, m.is_announcement FROM messages m JOIN users u ON u.id = m.user_id
                WHERE m.room_id = \(room) ORDER BY m.id DESC LIMIT \(Int64(limit))
            ) newest ORDER BY id
            """
        ).map { row in
            let (_, name, content, generated) = try row.decode((Int64, String, String, Bool).self)
            var message = IPCContextMessage()
            message.name = name
            message.content = content
            message.generated = generated
            return message
        }
    }

    // MARK: AI jobs

    static let jobColumns =
        "job_id, room_id, user_id, session_id, mode, request, state, created_at, deadline_at, leased_by, lease_until"

    func jobRow(_ row: PostgresRow) throws -> JobRow {
        let (jobId, room, user, session, mode, request, state, created, deadline, leasedBy, leaseUntil) = try row.decode(
            (String, Int64, Int64, String, String, Data, String, Int64, Int64, String, Int64).self)
        return JobRow(
            jobId: jobId, roomRowId: room, userRowId: user, sessionId: session, mode: mode, request: [UInt8](request), state: state,
            createdAt: created, deadlineAt: deadline, leasedBy: leasedBy, leaseUntil: leaseUntil)
    }

    func insertJob(_ job: JobRow) throws {
        try send(
            """
            INSERT INTO ai_jobs (job_id, room_id, user_id, session_id, mode, request, state, created_at, deadline_at, leased_by, lease_until)
            VALUES (\(job.jobId), \(job.roomRowId), \(job.userRowId), \(job.sessionId), \(job.mode), \(Data(job.request)), \(job.state),
                \(job.createdAt), \(job.deadlineAt), \(job.leasedBy), \(job.leaseUntil))
            """)
    }

    func job(id: String) throws -> JobRow? {
        try rows("SELECT \(unescaped: Self.jobColumns) FROM ai_jobs WHERE job_id = \(id) FOR UPDATE").first.map(jobRow)
    }

    func renewJobLeases(run: String, jobIds: [String], until: Int64) throws -> Int {
        try execute(
            "UPDATE ai_jobs SET lease_until = \(until) WHERE job_id = ANY(\(jobIds)::text[]) AND leased_by = \(run) AND state = 'queued'")
    }

    func claimJobs(run: String, now: Int64, until: Int64, limit: Int, all: Bool) throws -> [JobRow] {
        // SKIP LOCKED: a job another store is taking at this moment is left to it.
        try rows(
            """
            UPDATE ai_jobs SET leased_by = \(run), lease_until = \(until)
            WHERE id IN (
                SELECT id FROM ai_jobs WHERE state = 'queued' AND ((\(all) AND leased_by != \(run)) OR lease_until < \(now))
                ORDER BY id LIMIT \(Int64(limit)) FOR UPDATE SKIP LOCKED
            )
            RETURNING \(unescaped: Self.jobColumns)
            """
        ).map(jobRow).sorted { $0.createdAt < $1.createdAt }
    }

    func queuedJobs() throws -> [JobRow] {
        try rows("SELECT \(unescaped: Self.jobColumns) FROM ai_jobs WHERE state = 'queued' ORDER BY id").map(jobRow)
    }

    func hasQueuedJob(room: Int64, user: Int64, mode: String) throws -> Bool {
        try !rows("SELECT 1 FROM ai_jobs WHERE room_id = \(room) AND user_id = \(user) AND mode = \(mode) AND state = 'queued'").isEmpty
    }

    func deleteEndedJobs(before cutoff: Int64) throws -> Int {
        try execute("DELETE FROM ai_jobs WHERE state != 'queued' AND finished_at < \(cutoff)")
    }

    func finishJob(id: String, state: String, messageId: Int64?, error: String?, now: Int64) throws -> Bool {
        try execute(
            """
            UPDATE ai_jobs SET state = \(state), message_id = \(messageId), error = \(error), finished_at = \(now)
            WHERE job_id = \(id) AND state = 'queued'
            """) == 1
    }
}
