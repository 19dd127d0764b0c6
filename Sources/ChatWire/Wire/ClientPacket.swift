/// An inner packet a client sends inside `SECURE_MSG` (docs/protocol.md §5).
///
/// Decoding applies the protocol's text rules: text fields are trimmed
/// (§5.0), the email is also lower-cased (§5.3); the password is kept as
/// typed. A field that is absent or `null` reads as empty, so the handlers
/// answer with the protocol's "... is required." texts.
public enum ClientPacket: Equatable, Sendable {
    case ack(msgId: String?)
    case hello
    case login(email: String, password: String?)
    case logout
    case status
    case mergeSession(oldSessionId: String, oldSessionKey: String)
    case listRooms
    case createRoom(name: String)
    case joinRoom(roomId: String)
    case leaveRoom(roomId: String)
    case message(roomId: String, content: String)
    case aiMessage(roomId: String, content: String)
    /// `roomId` is nil when the request carried no `room_id` at all; the
    /// server then uses the user's current room (docs/protocol.md §12, item 31).
    case listMessages(roomId: String?)
    case listMembers(roomId: String?)

    /// The wire name of the packet type.
    public var typeName: String {
        switch self {
        case .ack: return "ACK"
        case .hello: return "HELLO"
        case .login: return "LOGIN"
        case .logout: return "LOGOUT"
        case .status: return "STATUS"
        case .mergeSession: return "MERGE_SESSION"
        case .listRooms: return "LIST_ROOMS"
        case .createRoom: return "CREATE_ROOM"
        case .joinRoom: return "JOIN_ROOM"
        case .leaveRoom: return "LEAVE_ROOM"
        case .message: return "MESSAGE"
        case .aiMessage: return "AI_MESSAGE"
        case .listMessages: return "LIST_MESSAGES"
        case .listMembers: return "LIST_MEMBERS"
        }
    }

    /// The packet as the JSON a client sends: `{"type": ..., "data": {...}}`.
    public var json: JSONValue {
        var data = JSONObject()
        switch self {
        case .ack(let msgId): if let msgId { data.append("msg_id", .string(msgId)) }
        case .hello, .logout, .status, .listRooms: break
        case .login(let email, let password):
            data.append("email", .string(email))
            if let password { data.append("password", .string(password)) }
        case .mergeSession(let id, let key):
            data.append("old_session_id", .string(id))
            data.append("old_session_key", .string(key))
        case .createRoom(let name): data.append("name", .string(name))
        case .joinRoom(let roomId), .leaveRoom(let roomId): data.append("room_id", .string(roomId))
        case .message(let roomId, let content), .aiMessage(let roomId, let content):
            data.append("room_id", .string(roomId))
            data.append("content", .string(content))
        case .listMessages(let roomId), .listMembers(let roomId):
            if let roomId { data.append("room_id", .string(roomId)) }
        }
        return ["type": .string(typeName), "data": .object(data)]
    }

    /// Why an authenticated inner packet could not be used.
    public enum DecodeError: Error, Equatable, Sendable {
        /// Not JSON, or not an object: the text says what was wrong.
        case malformed(String)
        /// A type the protocol does not have; the associated text is how the
        /// original prints it (`None` when missing).
        case unknownType(String)
        /// A field with the wrong JSON type.
        case invalidField(String)
        /// The packet carries a top-level `msg_id`, which only the server's
        /// own broadcasts do: it is one of ours sent back (§12, item 5).
        case reflected

        /// The inner `ERROR` text a client is shown; nil when the packet is
        /// dropped without an answer.
        public var errorText: String? {
            switch self {
            case .malformed(let reason): return ProtocolText.packetFailurePrefix + reason
            case .unknownType(let type): return ProtocolText.unknownPacketType(ProtocolText.echo(type))
            case .invalidField(let reason): return ProtocolText.packetFailurePrefix + reason
            case .reflected: return nil
            }
        }
    }

    /// Decodes the decrypted plaintext of a `SECURE_MSG`.
    public static func decode(_ plaintext: [UInt8]) throws(DecodeError) -> ClientPacket {
        let value: JSONValue
        do {
            value = try JSONParser.parse(plaintext)
        } catch {
            throw .malformed(error.description)
        }
        return try decode(value)
    }

    /// Decodes an inner packet already parsed as JSON.
    public static func decode(_ value: JSONValue) throws(DecodeError) -> ClientPacket {
        guard let object = value.objectValue else { throw .malformed("the packet is \(value.kindName), not an object") }
        if object["msg_id"] != nil { throw .reflected }
        let typeValue = object["type"] ?? .null
        guard let type = typeValue.stringValue else {
            throw .unknownType(typeValue.isNull ? "None" : typeValue.jsonText)
        }
        let data: JSONObject
        switch object["data"] {
        case nil, .null?: data = JSONObject()
        case .object(let given)?: data = given
        case let other?: throw .invalidField("\"data\" must be an object, not \(other.kindName)")
        }
        func text(_ key: String) throws(DecodeError) -> String? {
            switch data[key] {
            case nil, .null?: return nil
            case .string(let value)?: return value
            case let other?: throw .invalidField("\"\(key)\" must be a string, not \(other.kindName)")
            }
        }
        func trimmed(_ key: String) throws(DecodeError) -> String { TextRules.trimmed(try text(key) ?? "") }

        switch type {
        case "ACK":
            return .ack(msgId: data["msg_id"]?.stringValue)
        case "HELLO": return .hello
        case "LOGIN":
            return .login(email: try trimmed("email").lowercased(), password: try text("password"))
        case "LOGOUT": return .logout
        case "STATUS": return .status
        case "MERGE_SESSION":
            return .mergeSession(oldSessionId: try trimmed("old_session_id"), oldSessionKey: try trimmed("old_session_key"))
        case "LIST_ROOMS": return .listRooms
        case "CREATE_ROOM": return .createRoom(name: try trimmed("name"))
        case "JOIN_ROOM": return .joinRoom(roomId: try trimmed("room_id"))
        case "LEAVE_ROOM": return .leaveRoom(roomId: try trimmed("room_id"))
        case "MESSAGE": return .message(roomId: try trimmed("room_id"), content: try trimmed("content"))
        case "AI_MESSAGE": return .aiMessage(roomId: try trimmed("room_id"), content: try trimmed("content"))
        case "LIST_MESSAGES": return .listMessages(roomId: try text("room_id").map(TextRules.trimmed))
        case "LIST_MEMBERS": return .listMembers(roomId: try text("room_id").map(TextRules.trimmed))
        default: throw .unknownType(type)
        }
    }
}
