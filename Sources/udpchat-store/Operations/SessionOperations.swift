import ChatWire
import Foundation
import IPCMessages

extension Operations {
    /// Creates the session's row on its first authenticated packet
    /// (docs/architecture.md, "Handshake"), and records its liveness and replay mark.
    func ensureSession(_ tx: any StoreTransaction, _ context: IPCSessionContext) throws {
        if !context.wrappedKey.isEmpty {
            try tx.insertSession(
                id: sessionId, wrappedKey: [UInt8](context.wrappedKey), keyDigest: [UInt8](context.keyDigest),
                replayMark: context.replayMark, now: now)
        }
        if context.replayMark > 0 || !context.address.isEmpty {
            var activity = IPCSessionActivity()
            activity.sessionID = sessionId
            activity.lastActiveAt = now
            activity.replayMark = context.replayMark
            activity.address = context.address
            _ = try tx.recordActivity(activity)
        }
    }

    /// What a restarted edge needs to take a session over: its wrapped key,
    /// user, replay mark, last address and delivery cursors.
    static func loadSession(_ tx: any StoreTransaction, id: String) throws -> Outcome {
        var loaded = IPCLoadedSession()
        if let row = try tx.session(id: id) { loaded = try loadedSession(tx, row) }
        return .respond { response in
            response.sessionUserID = loaded.userID
            response.loadedSession = loaded
        }
    }

    /// A page of the sessions active since a time (a starting edge resumes them).
    static func loadSessions(_ tx: any StoreTransaction, _ load: IPCLoadSessions) throws -> Outcome {
        let limit = Int(min(max(load.limit, 1), maximumSessionPage))
        let rows = try tx.activeSessions(since: load.activeSince, after: load.afterSessionID, limit: limit + 1, edge: load.edge)
        var page = IPCLoadedSessions()
        page.sessions = try rows.prefix(limit).map { try loadedSession(tx, $0) }
        page.more = rows.count > limit
        return .respond { $0.loadedSessions = page }
    }

    /// Implementation constant: a page of sessions stays well under a megabyte.
    static let maximumSessionPage: UInt32 = 1000

    private static func loadedSession(_ tx: any StoreTransaction, _ row: SessionRow) throws -> IPCLoadedSession {
        var loaded = IPCLoadedSession()
        loaded.found = true
        loaded.sessionID = row.sessionId
        loaded.wrappedKey = .init(row.wrappedKey)
        loaded.replayMark = row.replayMark
        loaded.address = row.address
        loaded.lastActiveAt = row.lastActiveAt
        loaded.acknowledges = row.acknowledges
        if let userRow = row.userRowId, let user = try tx.user(rowId: userRow) {
            loaded.userID = user.userId
            loaded.cursors = try tx.cursors(session: row.sessionId)
        }
        return loaded
    }

    /// Liveness, replay marks, addresses and delivery cursors of many
    /// sessions, batched by the edge so that no datagram or ACK costs a
    /// write of its own.
    static func touchSessions(_ tx: any StoreTransaction, _ touch: IPCTouchSessions) throws -> Outcome {
        var outcome = Outcome.respond { $0.done = IPCDone() }
        for activity in touch.sessions where try tx.recordActivity(activity) {
            // Heard by another edge: the one that had it stops delivering to it.
            var moved = IPCSessionMoved()
            moved.sessionID = activity.sessionID
            moved.edge = activity.edge
            var event = IPCEvent()
            event.sessionMoved = moved
            outcome.events.append(event)
        }
        return outcome
    }

    /// Implementation constant: events returned per room and request.
    static let maximumEventPage: UInt32 = 1000

    /// Logged events of rooms after given positions.
    static func readRoomEvents(_ tx: any StoreTransaction, _ read: IPCReadRoomEvents) throws -> Outcome {
        let limit = Int(min(max(read.limit, 1), maximumEventPage))
        var pages = IPCRoomEventPages()
        for position in read.rooms.prefix(Int(maximumEventPage)) {
            var page = IPCRoomEventPage()
            page.roomID = position.roomID
            if let range = try tx.roomEvents(roomId: position.roomID, after: position.seq, limit: limit) {
                page.headSeq = range.head
                page.closed = range.closed
                page.events = try range.bodies.map { try IPCRoomEvent(serializedBytes: $0) }
            } else {
                page.closed = true
            }
            pages.pages.append(page)
        }
        return .respond { $0.roomEvents = pages }
    }
}
