import ChatWire

/// The protocol's requests as typed calls (docs/protocol.md §5).
extension ChatClient {
    public func hello() async throws -> String {
        guard case .hello(let message) = try await request(.hello, expecting: ["HELLO"]) else { throw unexpected() }
        return message
    }

    /// Logs in; a new email creates the account (docs/protocol.md §5.3).
    public func login(email: String, password: String? = nil) async throws -> UserInfo {
        switch try await request(.login(email: email, password: password), expecting: ["WELCOME", "PLEASE_LOGIN", "UNAUTHORISED"]) {
        case .welcome(let user): return user
        case .pleaseLogin(_, let email): throw ChatClientError.passwordRequired(email: email)
        case .unauthorised(let message): throw ChatClientError.unauthorised(message)
        default: throw unexpected()
        }
    }

    /// Logs in as the user of an earlier session, proven by its key (§5.6);
    /// nil when the server refuses.
    public func mergeSession(oldSessionId: String, oldSessionKey: String) async throws -> UserInfo? {
        switch try await request(
            .mergeSession(oldSessionId: oldSessionId, oldSessionKey: oldSessionKey), expecting: ["WELCOME", "MERGE_SESSION_FAILED"])
        {
        case .welcome(let user): return user
        case .mergeSessionFailed: return nil
        default: throw unexpected()
        }
    }

    public func logout() async throws {
        guard case .status = try await request(.logout, expecting: ["STATUS"]) else { throw unexpected() }
    }

    public func status() async throws -> StatusUser {
        guard case .status(_, let user) = try await request(.status, expecting: ["STATUS"]) else { throw unexpected() }
        return user
    }

    public func listRooms() async throws -> [RoomSummary] {
        guard case .roomList(let rooms) = try await request(.listRooms, expecting: ["ROOM_LIST"]) else { throw unexpected() }
        return rooms
    }

    public func createRoom(name: String) async throws -> RoomRef {
        guard case .roomCreated(let room) = try await request(.createRoom(name: name), expecting: ["ROOM_CREATED"]) else {
            throw unexpected()
        }
        return room
    }

    public func joinRoom(id: String) async throws -> RoomRef {
        guard case .joinedRoom(let room) = try await request(.joinRoom(roomId: id), expecting: ["JOINED_ROOM"]) else {
            throw unexpected()
        }
        return room
    }

    public func leaveRoom(id: String) async throws -> RoomRef {
        guard case .leftRoom(let room) = try await request(.leaveRoom(roomId: id), expecting: ["LEFT_ROOM"]) else {
            throw unexpected()
        }
        return room
    }

    /// Posts a message; returns its id and timestamp from `MESSAGE_SENT`.
    public func sendMessage(roomId: String, content: String) async throws -> (messageId: Int64, timestamp: Int64) {
        guard
            case .messageSent(let id, _, _, let timestamp) = try await request(
                .message(roomId: roomId, content: content), expecting: ["MESSAGE_SENT"],
                owns: { [room = TextRules.trimmed(roomId), text = TextRules.trimmed(content)] in
                    // The server trims text fields, as the protocol says.
                    if case .messageSent(_, room, text, _) = $0 { true } else { false }
                })
        else { throw unexpected() }
        return (id, timestamp)
    }

    /// A room's newest messages, oldest first; nil means the current room.
    public func history(roomId: String?) async throws -> [HistoryItem] {
        guard case .roomHistory(_, let items) = try await request(.listMessages(roomId: roomId), expecting: ["ROOM_HISTORY"]) else {
            throw unexpected()
        }
        return items
    }

    public func members(roomId: String?) async throws -> [MemberItem] {
        guard case .roomMembers(_, let members) = try await request(.listMembers(roomId: roomId), expecting: ["ROOM_MEMBERS"])
        else { throw unexpected() }
        return members
    }

    /// Asks for an AI reply. Nothing answers success (docs/protocol.md §5.12):
    /// the reply arrives as a `MESSAGE` broadcast, a refusal or failure as
    /// an `ERROR` event (``nextEvent(timeout:where:)``).
    public func askAI(roomId: String, draft: String) throws {
        try send(.aiMessage(roomId: roomId, content: draft))
    }

    /// The room with this exact name, from the room list.
    public func room(named name: String) async throws -> RoomSummary? {
        try await listRooms().first { $0.name == name }
    }

    private func unexpected() -> ChatError { ChatClientError.unexpected("reply of an unexpected type") }
}
