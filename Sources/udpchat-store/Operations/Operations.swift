import ChatWire
import Foundation
import IPCMessages

/// The result of one request: the response, and the events to publish
/// once the transaction that produced them has committed.
struct Outcome: Sendable {
    var response: IPCStoreResponse
    var events: [IPCEvent] = []
    /// Rows a maintenance write changed (logged, not sent).
    var affectedRows = 0
    /// AI jobs to hand to the workers once the transaction committed.
    var jobs: [QueuedJob] = []

    /// Whether the request was refused; its writes are then rolled back.
    var isRefusal: Bool {
        if case .error? = response.result { return true }
        return false
    }

    static func error(_ text: String) -> Outcome {
        var error = IPCProtocolError()
        error.message = text
        var response = IPCStoreResponse()
        response.error = error
        return Outcome(response: response)
    }

    static func respond(_ fill: (inout IPCStoreResponse) -> Void) -> Outcome {
        var response = IPCStoreResponse()
        fill(&response)
        return Outcome(response: response)
    }
}

/// The store's operations on behalf of one session, written once against
/// ``StoreTransaction``. Checks come in the order docs/protocol.md §5 gives, so
/// the first failing check decides the error text, as in the original.
struct Operations {
    /// Seconds since 1970 when the request is handled.
    let now: Int64
    /// The session the request acts for.
    let sessionId: String
    /// History length for LIST_MESSAGES (docs/protocol.md §5.13: 100).
    var historyLimit = WireSpec.historyLimit

    /// The session's row and logged-in user, if any.
    func caller(_ tx: any StoreTransaction) throws -> (session: SessionRow?, user: UserRow?) {
        guard let (session, user) = try tx.sessionWithUser(id: sessionId) else { return (nil, nil) }
        return (session, user)
    }

    /// The logged-in user; refuses with the protocol's `Authentication required.`.
    func requireUser(_ tx: any StoreTransaction) throws -> UserRow {
        guard let user = try caller(tx).user else { throw ChatError.refused(ProtocolText.authenticationRequired) }
        return user
    }

    /// docs/protocol.md §5.0 room lookup on an already trimmed id.
    func lookUpRoom(_ tx: any StoreTransaction, _ roomId: String) throws -> RoomRow {
        guard !roomId.isEmpty else { throw ChatError.refused(ProtocolText.roomIdRequired) }
        guard let room = try tx.room(roomId: roomId) else { throw ChatError.refused(ProtocolText.roomNotFound) }
        return room
    }

    /// UserInfo with the user's current room (§5.0).
    func userInfo(_ tx: any StoreTransaction, _ user: UserRow) throws -> IPCUserInfo {
        var info = IPCUserInfo()
        info.userID = user.userId
        info.email = user.email
        info.name = user.name
        if let room = try tx.currentRoom(user: user.rowId) { info.room = room.ref }
        return info
    }

    /// An event for a room's members; takes the room's next sequence number
    /// and keeps the event in the room's log, in the same transaction, so
    /// an edge that missed it can read it back.
    func roomEvent(_ tx: any StoreTransaction, _ room: RoomRow, _ fill: (inout IPCRoomEvent) -> Void) throws -> IPCEvent {
        var roomEvent = IPCRoomEvent()
        roomEvent.roomID = room.roomId
        roomEvent.seq = try tx.nextSequence(room: room.rowId)
        fill(&roomEvent)
        // Recipients are who the members are now; the log does not keep
        // them (a reader follows membership through the events themselves).
        try tx.appendRoomEvent(room: room.rowId, seq: roomEvent.seq, body: try roomEvent.serializedBytes(), now: now)
        roomEvent.recipientUserIds = try tx.memberUserIds(room: room.rowId)
        var event = IPCEvent()
        event.room = roomEvent
        return event
    }

    /// The rooms the session follows now, for a response that changed them.
    func follows(_ tx: any StoreTransaction) throws -> IPCSessionFollows {
        var follows = IPCSessionFollows()
        follows.cursors = try tx.cursors(session: sessionId)
        return follows
    }

    /// Makes `user` the session's user. A new user (or none) starts the
    /// session's cursors afresh; the same user keeps them.
    func setUser(_ tx: any StoreTransaction, _ user: UserRow?) throws {
        let previous = try tx.session(id: sessionId)?.userRowId
        try tx.setSessionUser(id: sessionId, user: user?.rowId, now: now)
        if previous == user?.rowId, user != nil {
            try tx.addMissingCursors(session: sessionId)
        } else {
            try tx.resetCursors(session: sessionId)
        }
    }

    /// An event for a user's other sessions.
    func userEvent(_ user: UserRow, _ fill: (inout IPCUserEvent) -> Void) -> IPCEvent {
        var userEvent = IPCUserEvent()
        userEvent.userID = user.userId
        userEvent.exceptSessionID = sessionId
        fill(&userEvent)
        var event = IPCEvent()
        event.user = userEvent
        return event
    }

    /// The room list broadcast to every active session.
    func roomListEvent(_ tx: any StoreTransaction) throws -> IPCEvent {
        var list = IPCRoomListChanged()
        list.rooms = try tx.publicRooms()
        var event = IPCEvent()
        event.roomList = list
        return event
    }
}

extension ChatError.Code {
    /// A request an operation's checks refused; the message is the
    /// protocol's error text for the client.
    static let refused = ChatError.Code("refused")
}

extension ChatError {
    /// Thrown by an operation's checks: the service answers with `text`
    /// as the error response, and the operation's writes are undone.
    static func refused(_ text: String) -> ChatError { ChatError(.refused, text) }
}

extension IPCMemberItem {
    init(user: UserRow, isAdmin: Bool, joinedAt: Int64) {
        self.init()
        userID = user.userId
        name = user.name
        self.isAdmin = isAdmin
        self.joinedAt = joinedAt
    }
}
