/// The object shapes of docs/protocol.md §5.0, with their JSON forms.
///
/// Encoding writes exactly the original's field names; decoding (used by
/// clients) accepts both revisions' spellings of booleans and tolerates
/// `null` timestamps.

/// `{"room_id", "name"}`
public struct RoomRef: Equatable, Sendable {
    public var roomId: String
    public var name: String

    public init(roomId: String, name: String) {
        self.roomId = roomId
        self.name = name
    }

    public var json: JSONValue { ["room_id": .string(roomId), "name": .string(name)] }

    public init(json: JSONValue) throws(WireDecodeError) {
        let object = try WireDecodeError.object(json, "RoomRef")
        roomId = try WireDecodeError.string(object, "room_id")
        name = try WireDecodeError.string(object, "name")
    }
}

/// `{"email", "name", "user_id", "room": RoomRef or null}`
public struct UserInfo: Equatable, Sendable {
    public var email: String
    public var name: String
    public var userId: String
    /// The user's current room: of the rooms they belong to, the most recently active.
    public var room: RoomRef?

    public init(email: String, name: String, userId: String, room: RoomRef?) {
        self.email = email
        self.name = name
        self.userId = userId
        self.room = room
    }

    public var json: JSONValue {
        [
            "email": .string(email), "name": .string(name), "user_id": .string(userId),
            "room": room?.json ?? .null,
        ]
    }

    public init(json: JSONValue) throws(WireDecodeError) {
        let object = try WireDecodeError.object(json, "UserInfo")
        email = try WireDecodeError.string(object, "email")
        name = try WireDecodeError.string(object, "name")
        userId = try WireDecodeError.string(object, "user_id")
        if let room = object["room"], !room.isNull { self.room = try RoomRef(json: room) } else { room = nil }
    }
}

/// `{"room_id", "name", "last_active_at"}`
public struct RoomSummary: Equatable, Sendable {
    public var roomId: String
    public var name: String
    public var lastActiveAt: Int64

    public init(roomId: String, name: String, lastActiveAt: Int64) {
        self.roomId = roomId
        self.name = name
        self.lastActiveAt = lastActiveAt
    }

    public var json: JSONValue {
        ["room_id": .string(roomId), "name": .string(name), "last_active_at": .int(lastActiveAt)]
    }

    public init(json: JSONValue) throws(WireDecodeError) {
        let object = try WireDecodeError.object(json, "RoomSummary")
        roomId = try WireDecodeError.string(object, "room_id")
        name = try WireDecodeError.string(object, "name")
        lastActiveAt = WireDecodeError.timestamp(object, "last_active_at")
    }
}

/// `{"message_id", "user_id", "name", "content", "timestamp"}`
public struct HistoryItem: Equatable, Sendable {
    public var messageId: Int64
    public var userId: String
    public var name: String
    public var content: String
    public var timestamp: Int64

    public init(messageId: Int64, userId: String, name: String, content: String, timestamp: Int64) {
        self.messageId = messageId
        self.userId = userId
        self.name = name
        self.content = content
        self.timestamp = timestamp
    }

    public var json: JSONValue {
        [
            "message_id": .int(messageId), "user_id": .string(userId), "name": .string(name),
            "content": .string(content), "timestamp": .int(timestamp),
        ]
    }

    public init(json: JSONValue) throws(WireDecodeError) {
        let object = try WireDecodeError.object(json, "HistoryItem")
        messageId = try WireDecodeError.int(object, "message_id")
        userId = try WireDecodeError.string(object, "user_id")
        name = try WireDecodeError.string(object, "name")
        content = try WireDecodeError.string(object, "content")
        timestamp = WireDecodeError.timestamp(object, "timestamp")
    }
}

/// `{"room_id", "message_id", "user_id", "name", "content", "timestamp"}`
public struct MessageEvent: Equatable, Sendable {
    public var roomId: String
    public var messageId: Int64
    public var userId: String
    public var name: String
    public var content: String
    public var timestamp: Int64

    public init(roomId: String, messageId: Int64, userId: String, name: String, content: String, timestamp: Int64) {
        self.roomId = roomId
        self.messageId = messageId
        self.userId = userId
        self.name = name
        self.content = content
        self.timestamp = timestamp
    }

    public var json: JSONValue {
        [
            "room_id": .string(roomId), "message_id": .int(messageId), "user_id": .string(userId),
            "name": .string(name), "content": .string(content), "timestamp": .int(timestamp),
        ]
    }

    public init(json: JSONValue) throws(WireDecodeError) {
        let object = try WireDecodeError.object(json, "MessageEvent")
        roomId = try WireDecodeError.string(object, "room_id")
        messageId = try WireDecodeError.int(object, "message_id")
        userId = try WireDecodeError.string(object, "user_id")
        name = try WireDecodeError.string(object, "name")
        content = try WireDecodeError.string(object, "content")
        timestamp = WireDecodeError.timestamp(object, "timestamp")
    }
}

/// `{"user_id", "name", "is_admin", "joined_at"}`; `is_admin` is a JSON
/// boolean, as in the later original revision.
public struct MemberItem: Equatable, Sendable {
    public var userId: String
    public var name: String
    public var isAdmin: Bool
    public var joinedAt: Int64

    public init(userId: String, name: String, isAdmin: Bool, joinedAt: Int64) {
        self.userId = userId
        self.name = name
        self.isAdmin = isAdmin
        self.joinedAt = joinedAt
    }

    public var json: JSONValue {
        ["user_id": .string(userId), "name": .string(name), "is_admin": .bool(isAdmin), "joined_at": .int(joinedAt)]
    }

    public init(json: JSONValue) throws(WireDecodeError) {
        let object = try WireDecodeError.object(json, "MemberItem")
        userId = try WireDecodeError.string(object, "user_id")
        name = try WireDecodeError.string(object, "name")
        guard let admin = object["is_admin"]?.boolValue else { throw WireDecodeError("MemberItem.is_admin is missing") }
        isAdmin = admin
        joinedAt = WireDecodeError.timestamp(object, "joined_at")
    }
}

/// A packet or shape that does not have the form the protocol gives it.
public struct WireDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }

    static func object(_ value: JSONValue, _ what: String) throws(WireDecodeError) -> JSONObject {
        guard let object = value.objectValue else { throw WireDecodeError("\(what) is \(value.kindName), not an object") }
        return object
    }

    static func string(_ object: JSONObject, _ key: String) throws(WireDecodeError) -> String {
        guard let text = object[key]?.stringValue else { throw WireDecodeError("field \"\(key)\" must be a string") }
        return text
    }

    static func int(_ object: JSONObject, _ key: String) throws(WireDecodeError) -> Int64 {
        guard let value = object[key]?.intValue else { throw WireDecodeError("field \"\(key)\" must be an integer") }
        return value
    }

    static func array(_ value: JSONValue?, _ what: String) throws(WireDecodeError) -> [JSONValue] {
        guard let elements = value?.arrayValue else { throw WireDecodeError("\(what) must be an array") }
        return elements
    }

    /// Timestamps may be `null` at the later original revision (docs/protocol.md §1.3); that reads as 0.
    static func timestamp(_ object: JSONObject, _ key: String) -> Int64 {
        object[key]?.intValue ?? 0
    }
}
