import ChatWire
import IPCMessages

/// The seam between the store's logic and its database (docs/architecture.md,
/// "Storage"): the operations in `Operations/` are written once against
/// ``StoreTransaction``; a backend (SQLite, or PostgreSQL with DATABASE_URL) supplies
/// transactions.
protocol StorageBackend: Sendable {
    /// Runs `body` in a read-only transaction that sees every committed write.
    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T
    /// Runs `body` in one write transaction and commits it durably before returning.
    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T
}

/// The queries and updates the operations need, inside one transaction.
/// Times are Unix epoch seconds.
protocol StoreTransaction {
    /// Runs `body` in a savepoint, undone when `body` throws or asks for it.
    func inSavepoint<T>(_ body: () throws -> (value: T, keep: Bool)) throws -> T

    // Sessions
    func session(id: String) throws -> SessionRow?
    /// The session and its user (nil when it has none), in one read.
    func sessionWithUser(id: String) throws -> (session: SessionRow, user: UserRow?)?
    /// Inserts the row unless one with that id exists.
    func insertSession(id: String, wrappedKey: [UInt8], keyDigest: [UInt8], replayMark: UInt64, now: Int64) throws
    func setSessionUser(id: String, user: Int64?, now: Int64) throws
    /// Deletes sessions last active before `cutoff`; returns how many.
    func deleteSessions(lastActiveBefore cutoff: Int64) throws -> Int
    /// Records what an edge reported: liveness, replay mark, address,
    /// whether it acknowledges, cursors (each only moves forward, and only
    /// for a room the session's user belongs to) and the edge that heard it.
    /// Returns whether the session moved to that edge from another.
    func recordActivity(_ activity: IPCSessionActivity) throws -> Bool
    /// Sessions active at or after `since` whose id sorts after `after`, by
    /// id; with `edge`, only those that edge heard last or no edge claimed.
    func activeSessions(since: Int64, after: String, limit: Int, edge: String) throws -> [SessionRow]

    // Delivery cursors: per session, the rooms it follows and the last
    // sequence number delivered in each (docs/architecture.md, "Delivery from
    // durable state")
    /// The session follows exactly the open rooms of its user, each from
    /// the room's current sequence number (a new login).
    func resetCursors(session: String) throws
    /// Adds, from the current sequence number, the rooms of the session's
    /// user it does not follow yet; keeps the others.
    func addMissingCursors(session: String) throws
    /// Every session of `user` follows `room` after `seq`.
    func follow(room: Int64, user: Int64, after seq: UInt64) throws
    /// No session of `user` follows `room` any more.
    func unfollow(room: Int64, user: Int64) throws
    /// The rooms the session follows, by public id, with their cursors.
    func cursors(session: String) throws -> [IPCRoomCursor]

    // The room event log
    /// Keeps a committed room event (its body without recipients).
    func appendRoomEvent(room: Int64, seq: UInt64, body: [UInt8], now: Int64) throws
    /// Up to `limit` events of a room after `seq`, oldest first, with the
    /// room's newest sequence number; nil when there is no such room.
    func roomEvents(roomId: String, after seq: UInt64, limit: Int) throws -> RoomEventRange?
    /// Deletes logged events older than `cutoff`; returns how many.
    func deleteRoomEvents(before cutoff: Int64) throws -> Int

    // Request results (a write carried out once per session and nonce)
    /// The answer recorded for `session`'s write with `nonce`, if any.
    func requestResult(session: String, nonce: [UInt8]) throws -> [UInt8]?
    /// Records a write's answer (nothing if the session has no row).
    func recordRequestResult(session: String, nonce: [UInt8], response: [UInt8], now: Int64) throws
    /// Deletes answers recorded before `cutoff`; returns how many.
    func deleteRequestResults(before cutoff: Int64) throws -> Int

    // Users
    func user(email: String) throws -> UserRow?
    func user(rowId: Int64) throws -> UserRow?
    func insertUser(userId: String, email: String, name: String, now: Int64) throws -> UserRow
    func touchUser(rowId: Int64, now: Int64) throws
    func setPasswordHash(user: Int64, hash: String?) throws
    /// Every user, by email.
    func allUsers() throws -> [UserRow]
    /// Deletes a user with their memberships and messages; returns how many
    /// messages went with them, or nil when there is no such user.
    func deleteUser(email: String) throws -> Int?

    // Rooms (closed rooms are invisible to every query here)
    func room(roomId: String) throws -> RoomRow?
    /// The room and whether `user` belongs to it, in one read.
    func room(roomId: String, member user: Int64) throws -> (room: RoomRow, isMember: Bool)?
    func roomNameTaken(_ name: String) throws -> Bool
    func insertRoom(roomId: String, name: String, now: Int64) throws -> RoomRow
    /// Open public rooms in storage order.
    func publicRooms() throws -> [IPCRoomSummary]
    /// Of the rooms `user` belongs to, the most recently active.
    func currentRoom(user: Int64) throws -> RoomRow?
    func touchRoom(_ room: Int64, now: Int64) throws
    /// Advances and returns the room's event sequence number.
    func nextSequence(room: Int64) throws -> UInt64
    /// Closes a room: it disappears from lists and lookups, its name is free
    /// again, and its messages stay in the database.
    func closeRoom(_ room: Int64, now: Int64) throws

    // Members
    func isMember(room: Int64, user: Int64) throws -> Bool
    func addMember(room: Int64, user: Int64, isAdmin: Bool, now: Int64) throws
    func removeMember(room: Int64, user: Int64) throws
    /// Members with their membership flag, by name.
    func members(room: Int64) throws -> [IPCMemberItem]
    /// Public ids of the members.
    func memberUserIds(room: Int64) throws -> [String]

    // Messages
    func insertMessage(room: Int64, user: Int64, content: String, isAnnouncement: Bool, now: Int64) throws -> Int64
    /// The `limit` newest messages, oldest first, in commit order.
    func history(room: Int64, limit: Int) throws -> [IPCHistoryItem]
    /// The room's newest message: its author and whether the AI wrote it.
    func latestMessage(room: Int64) throws -> (user: Int64, generated: Bool)?
    /// The `limit` newest messages as AI context, oldest first.
    func context(room: Int64, limit: Int) throws -> [IPCContextMessage]

    // AI jobs (times in Unix milliseconds)
    func insertJob(_ job: JobRow) throws
    /// The job, locked until the transaction ends (a store finishing it at
    /// the same time waits, then finds it ended). Write transactions only.
    func job(id: String) throws -> JobRow?
    /// Extends the lease of those of `jobIds` that `run` holds and are
    /// still queued; returns how many.
    func renewJobLeases(run: String, jobIds: [String], until: Int64) throws -> Int
    /// Takes up to `limit` queued jobs whose lease ran out before `now`
    /// (every queued job not held by `run` when `all`), for `run`, until
    /// `until`; oldest first. Two stores never take the same job. A job of
    /// `run`'s own whose lease ran out is taken again (its store let it go).
    func claimJobs(run: String, now: Int64, until: Int64, limit: Int, all: Bool) throws -> [JobRow]
    /// Jobs not yet done or failed.
    func queuedJobs() throws -> [JobRow]
    /// Whether `user` already has a queued job of `mode` in `room`.
    func hasQueuedJob(room: Int64, user: Int64, mode: String) throws -> Bool
    /// Deletes jobs that ended before `cutoff`; returns how many.
    func deleteEndedJobs(before cutoff: Int64) throws -> Int
    /// Marks a queued job done or failed; false when it had already ended.
    func finishJob(id: String, state: String, messageId: Int64?, error: String?, now: Int64) throws -> Bool
}

/// An AI job as stored; `request` is the serialized ``IPCAIJob``.
struct JobRow: Sendable {
    var jobId: String
    var roomRowId: Int64
    var userRowId: Int64
    var sessionId: String
    var mode: String
    var request: [UInt8]
    var state: String
    var createdAt: Int64
    var deadlineAt: Int64
    /// The store process that hands it out, and until when (ms).
    var leasedBy = ""
    var leaseUntil: Int64 = 0
}

struct SessionRow: Sendable {
    var sessionId: String
    var userRowId: Int64?
    var wrappedKey: [UInt8]
    var keyDigest: [UInt8]
    var replayMark: UInt64
    var lastActiveAt: Int64
    var address: String = ""
    var acknowledges = false
}

/// Logged events of one room.
struct RoomEventRange: Sendable {
    /// The room's newest sequence number.
    var head: UInt64
    var closed: Bool
    /// Serialized ``IPCRoomEvent``s, oldest first.
    var bodies: [[UInt8]]
}

struct UserRow: Sendable {
    var rowId: Int64
    var userId: String
    var email: String
    var name: String
    var passwordHash: String?
    var isAdmin: Bool
}

struct RoomRow: Sendable {
    var rowId: Int64
    var roomId: String
    var name: String
    var lastActiveAt: Int64

    var ref: IPCRoomRef {
        var ref = IPCRoomRef()
        ref.roomID = roomId
        ref.name = name
        return ref
    }
}
