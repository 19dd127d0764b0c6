/// What `STATUS` says about the user (docs/protocol.md §5.4–§5.5): a logged-in
/// user, the empty object `{}` that `STATUS` sends when logged out, or the
/// `null` that `LOGOUT` sends.
public enum StatusUser: Equatable, Sendable {
    case user(UserInfo)
    case empty
    case null
}

/// An inner packet the server sends (docs/protocol.md §5.16 and §6.1).
public enum ServerPacket: Equatable, Sendable {
    case hello(message: String)
    case welcome(UserInfo)
    case pleaseLogin(message: String, email: String)
    case unauthorised(message: String)
    case status(sessionId: String, user: StatusUser)
    case mergeSessionFailed
    case roomList([RoomSummary])
    case roomCreated(RoomRef)
    case joinedRoom(RoomRef)
    case leftRoom(RoomRef)
    /// `roomId` is an extra top-level key naming the room (§12, item 29);
    /// clients that do not know it ignore it.
    case roomHistory(roomId: String?, items: [HistoryItem])
    case roomMembers(roomId: String?, members: [MemberItem])
    case messageSent(messageId: Int64, roomId: String, content: String, timestamp: Int64)
    case error(message: String)
    // Broadcasts (§6.1)
    case message(MessageEvent)
    case memberJoined(roomId: String, member: MemberItem)
    case memberLeft(roomId: String, memberId: String)
    case roomJoined(roomId: String, roomName: String)
    case roomLeft(roomId: String, roomName: String)

    /// The wire name of the packet type.
    public var typeName: String {
        switch self {
        case .hello: return "HELLO"
        case .welcome: return "WELCOME"
        case .pleaseLogin: return "PLEASE_LOGIN"
        case .unauthorised: return "UNAUTHORISED"
        case .status: return "STATUS"
        case .mergeSessionFailed: return "MERGE_SESSION_FAILED"
        case .roomList: return "ROOM_LIST"
        case .roomCreated: return "ROOM_CREATED"
        case .joinedRoom: return "JOINED_ROOM"
        case .leftRoom: return "LEFT_ROOM"
        case .roomHistory: return "ROOM_HISTORY"
        case .roomMembers: return "ROOM_MEMBERS"
        case .messageSent: return "MESSAGE_SENT"
        case .error: return "ERROR"
        case .message: return "MESSAGE"
        case .memberJoined: return "MEMBER_JOINED"
        case .memberLeft: return "MEMBER_LEFT"
        case .roomJoined: return "ROOM_JOINED"
        case .roomLeft: return "ROOM_LEFT"
        }
    }

    /// The packet as JSON; `msgId` is added as a top-level key for broadcast
    /// copies (§6.2).
    public func json(msgId: String? = nil) -> JSONValue {
        var object = JSONObject()
        object.append("type", .string(typeName))
        switch self {
        case .hello(let message):
            object.append("message", .string(message))
        case .welcome(let user):
            object.append("data", ["user": user.json])
        case .pleaseLogin(let message, let email):
            object.append("data", ["message": .string(message), "email": .string(email)])
        case .unauthorised(let message), .error(let message):
            object.append("data", ["message": .string(message)])
        case .status(let sessionId, let user):
            let userJSON: JSONValue
            switch user {
            case .user(let info): userJSON = info.json
            case .empty: userJSON = .object(JSONObject())
            case .null: userJSON = .null
            }
            object.append("data", ["session_id": .string(sessionId), "user": userJSON])
        case .mergeSessionFailed:
            break
        case .roomList(let rooms):
            object.append("data", .array(rooms.map(\.json)))
        case .roomCreated(let room), .joinedRoom(let room), .leftRoom(let room):
            object.append("data", room.json)
        case .roomHistory(let roomId, let items):
            object.append("data", .array(items.map(\.json)))
            if let roomId { object.append("room_id", .string(roomId)) }
        case .roomMembers(let roomId, let members):
            object.append("data", .array(members.map(\.json)))
            if let roomId { object.append("room_id", .string(roomId)) }
        case .messageSent(let messageId, let roomId, let content, let timestamp):
            object.append(
                "data",
                [
                    "message_id": .int(messageId), "room_id": .string(roomId), "content": .string(content),
                    "timestamp": .int(timestamp),
                ])
        case .message(let event):
            object.append("data", event.json)
        case .memberJoined(let roomId, let member):
            object.append("data", ["room_id": .string(roomId), "member": member.json])
        case .memberLeft(let roomId, let memberId):
            object.append("data", ["room_id": .string(roomId), "member_id": .string(memberId)])
        case .roomJoined(let roomId, let roomName), .roomLeft(let roomId, let roomName):
            object.append("data", ["room_id": .string(roomId), "room_name": .string(roomName)])
        }
        if let msgId { object.append("msg_id", .string(msgId)) }
        return .object(object)
    }

    /// A packet as received by a client, with the `msg_id` of a broadcast copy.
    public struct Received: Equatable, Sendable {
        public var packet: ServerPacket
        public var msgId: String?

        public init(packet: ServerPacket, msgId: String?) {
            self.packet = packet
            self.msgId = msgId
        }
    }

    /// Decodes a decrypted server packet (client side).
    public static func decode(_ plaintext: [UInt8]) throws(WireDecodeError) -> Received {
        let value: JSONValue
        do {
            value = try JSONParser.parse(plaintext)
        } catch {
            throw WireDecodeError("not JSON: \(error)")
        }
        return try decode(value)
    }

    /// Decodes a server packet already parsed as JSON.
    public static func decode(_ value: JSONValue) throws(WireDecodeError) -> Received {
        let object = try WireDecodeError.object(value, "packet")
        let type = try WireDecodeError.string(object, "type")
        let msgId = object["msg_id"]?.stringValue
        let data = object["data"] ?? .null
        func dataObject() throws(WireDecodeError) -> JSONObject { try WireDecodeError.object(data, "\(type).data") }

        let packet: ServerPacket
        switch type {
        case "HELLO":
            packet = .hello(message: try WireDecodeError.string(object, "message"))
        case "WELCOME":
            let d = try dataObject()
            packet = .welcome(try UserInfo(json: d["user"] ?? .null))
        case "PLEASE_LOGIN":
            let d = try dataObject()
            packet = .pleaseLogin(
                message: try WireDecodeError.string(d, "message"), email: try WireDecodeError.string(d, "email"))
        case "UNAUTHORISED":
            packet = .unauthorised(message: try WireDecodeError.string(try dataObject(), "message"))
        case "ERROR":
            packet = .error(message: try WireDecodeError.string(try dataObject(), "message"))
        case "STATUS":
            let d = try dataObject()
            let user: StatusUser
            switch d["user"] {
            case nil, .null?: user = .null
            case .object(let o)? where o.count == 0: user = .empty
            case let other?: user = .user(try UserInfo(json: other))
            }
            packet = .status(sessionId: try WireDecodeError.string(d, "session_id"), user: user)
        case "MERGE_SESSION_FAILED":
            packet = .mergeSessionFailed
        case "ROOM_LIST":
            var rooms: [RoomSummary] = []
            for element in try WireDecodeError.array(data, "ROOM_LIST.data") { rooms.append(try RoomSummary(json: element)) }
            packet = .roomList(rooms)
        case "ROOM_CREATED": packet = .roomCreated(try RoomRef(json: data))
        case "JOINED_ROOM": packet = .joinedRoom(try RoomRef(json: data))
        case "LEFT_ROOM": packet = .leftRoom(try RoomRef(json: data))
        case "ROOM_HISTORY":
            var items: [HistoryItem] = []
            for element in try WireDecodeError.array(data, "ROOM_HISTORY.data") { items.append(try HistoryItem(json: element)) }
            packet = .roomHistory(roomId: object["room_id"]?.stringValue, items: items)
        case "ROOM_MEMBERS":
            var members: [MemberItem] = []
            for element in try WireDecodeError.array(data, "ROOM_MEMBERS.data") { members.append(try MemberItem(json: element)) }
            packet = .roomMembers(roomId: object["room_id"]?.stringValue, members: members)
        case "MESSAGE_SENT":
            let d = try dataObject()
            packet = .messageSent(
                messageId: try WireDecodeError.int(d, "message_id"), roomId: try WireDecodeError.string(d, "room_id"),
                content: try WireDecodeError.string(d, "content"), timestamp: WireDecodeError.timestamp(d, "timestamp"))
        case "MESSAGE":
            packet = .message(try MessageEvent(json: data))
        case "MEMBER_JOINED":
            let d = try dataObject()
            packet = .memberJoined(roomId: try WireDecodeError.string(d, "room_id"), member: try MemberItem(json: d["member"] ?? .null))
        case "MEMBER_LEFT":
            let d = try dataObject()
            packet = .memberLeft(roomId: try WireDecodeError.string(d, "room_id"), memberId: try WireDecodeError.string(d, "member_id"))
        case "ROOM_JOINED":
            let d = try dataObject()
            packet = .roomJoined(roomId: try WireDecodeError.string(d, "room_id"), roomName: try WireDecodeError.string(d, "room_name"))
        case "ROOM_LEFT":
            let d = try dataObject()
            packet = .roomLeft(roomId: try WireDecodeError.string(d, "room_id"), roomName: try WireDecodeError.string(d, "room_name"))
        default:
            throw WireDecodeError("unknown packet type \(type)")
        }
        return Received(packet: packet, msgId: msgId)
    }
}

/// A broadcast encoded once for all its recipients: each copy differs only
/// in its `msg_id`, which is the last member of the object, so a copy is
/// the shared prefix and the id spliced before the closing brace. The
/// bytes equal `packet.json(msgId:).serialized()`.
public struct BroadcastTemplate: Sendable {
    public let packet: ServerPacket
    private let prefix: [UInt8]

    public init(_ packet: ServerPacket) {
        self.packet = packet
        var bytes = packet.json().serialized()
        bytes.removeLast()  // the object's closing brace
        prefix = bytes
    }

    /// The inner JSON of the copy carrying `msgId`.
    public func copy(msgId: String) -> [UInt8] {
        var bytes = prefix
        bytes.reserveCapacity(prefix.count + msgId.utf8.count + 12)
        bytes.append(contentsOf: #","msg_id":"#.utf8)
        JSONValue.writeString(msgId, to: &bytes)
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }
}
