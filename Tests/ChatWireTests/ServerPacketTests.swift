import ChatWire
import Testing

@Suite struct ServerPacketTests {
    static let room = RoomRef(roomId: "0123456789abcdef0123456789abcdef", name: "General")
    static let user = UserInfo(email: "alice@example.com", name: "alice", userId: "u1", room: room)
    static let member = MemberItem(userId: "u1", name: "alice", isAdmin: true, joinedAt: 1_747_300_000)
    static let event = MessageEvent(roomId: "r1", messageId: 42, userId: "u1", name: "alice", content: "Hi all", timestamp: 1_747_300_060)

    static let all: [ServerPacket] = [
        .hello(message: "Welcome to UDPChat-AI."), .welcome(user),
        .welcome(UserInfo(email: "b@example.com", name: "b", userId: "u2", room: nil)),
        .pleaseLogin(message: "Please type your password to continue", email: "a@example.com"),
        .unauthorised(message: "Incorrect password"), .status(sessionId: "s1", user: .user(user)),
        .status(sessionId: "s1", user: .empty), .status(sessionId: "s1", user: .null), .mergeSessionFailed,
        .roomList([RoomSummary(roomId: "r1", name: "General", lastActiveAt: 1_747_300_000)]), .roomList([]),
        .roomCreated(room), .joinedRoom(room), .leftRoom(room),
        .roomHistory(roomId: "r1", items: [HistoryItem(messageId: 1, userId: "u1", name: "alice", content: "x", timestamp: 5)]),
        .roomMembers(roomId: "r1", members: [member]),
        .messageSent(messageId: 42, roomId: "r1", content: "Hi all", timestamp: 1_747_300_060),
        .error(message: "Room not found."), .message(event), .memberJoined(roomId: "r1", member: member),
        .memberLeft(roomId: "r1", memberId: "u2"), .roomJoined(roomId: "r1", roomName: "General"),
        .roomLeft(roomId: "r1", roomName: "General"),
    ]

    @Test func everyPacketRoundTripsWithAndWithoutMsgId() throws {
        for packet in Self.all {
            #expect(try ServerPacket.decode(packet.json().serialized()) == .init(packet: packet, msgId: nil), "\(packet.typeName)")
            let copy = try ServerPacket.decode(packet.json(msgId: "m1").serialized())
            #expect(copy == .init(packet: packet, msgId: "m1"), "\(packet.typeName)")
        }
    }

    /// The shapes of docs/protocol.md §5.16, including the odd ones.
    @Test func shapesMatchTheProtocol() throws {
        #expect(ServerPacket.hello(message: "Welcome to UDPChat-AI.").json() == ["type": "HELLO", "message": "Welcome to UDPChat-AI."])
        #expect(ServerPacket.mergeSessionFailed.json() == ["type": "MERGE_SESSION_FAILED"])
        #expect(ServerPacket.status(sessionId: "s", user: .empty).json() == ["type": "STATUS", "data": ["session_id": "s", "user": [:]]])
        #expect(ServerPacket.status(sessionId: "s", user: .null).json() == ["type": "STATUS", "data": ["session_id": "s", "user": nil]])
        #expect(
            ServerPacket.message(Self.event).json(msgId: "m2")
                == [
                    "type": "MESSAGE", "msg_id": "m2",
                    "data": [
                        "room_id": "r1", "message_id": 42, "user_id": "u1", "name": "alice", "content": "Hi all",
                        "timestamp": 1_747_300_060,
                    ],
                ])
        #expect(
            ServerPacket.welcome(UserInfo(email: "e@x.io", name: "e", userId: "u", room: nil)).json()
                == ["type": "WELCOME", "data": ["user": ["email": "e@x.io", "name": "e", "user_id": "u", "room": nil]]])
        // The later revision's booleans (docs/protocol.md §1.3).
        #expect(
            ServerPacket.roomMembers(roomId: nil, members: [Self.member]).json()
                == ["type": "ROOM_MEMBERS", "data": [["user_id": "u1", "name": "alice", "is_admin": true, "joined_at": 1_747_300_000]]])
        #expect(ServerPacket.error(message: "x").json() == ["type": "ERROR", "data": ["message": "x"]])
    }

    @Test func readsTheFirstRevisionsIntegerBooleans() throws {
        let text = #"{"type":"ROOM_MEMBERS","data":[{"user_id":"u","name":"n","is_admin":1,"joined_at":null}]}"#
        let received = try ServerPacket.decode(Array(text.utf8))
        #expect(received.packet == .roomMembers(roomId: nil, members: [MemberItem(userId: "u", name: "n", isAdmin: true, joinedAt: 0)]))
    }

    @Test func broadcastTemplateCopiesEqualTheFullEncoding() {
        for packet in Self.all {
            let template = BroadcastTemplate(packet)
            for msgId in ["0123456789abcdef0123456789abcdef", "m"] {
                #expect(template.copy(msgId: msgId) == packet.json(msgId: msgId).serialized(), "\(packet.typeName)")
            }
        }
    }
}

@Suite struct PacketTrimmingTests {
    static let limit = 2_000
    static func fits(_ json: [UInt8]) -> Bool { json.count <= limit }

    @Test func historyKeepsItsNewestMessagesOldestFirst() throws {
        let items = (1...200).map {
            HistoryItem(messageId: Int64($0), userId: "u", name: "n", content: String(repeating: "x", count: 50), timestamp: 1)
        }
        let trimmed = try #require(ServerPacket.roomHistory(roomId: "r", items: items).trimmed(toFit: Self.fits))
        guard case .roomHistory(let roomId, let kept) = trimmed else { Issue.record("not a history"); return }
        #expect(roomId == "r" && !kept.isEmpty && kept.count < 200)
        #expect(kept.map(\.messageId) == Array(Int64(201 - kept.count)...200))
        #expect(Self.fits(trimmed.json().serialized()))
        // One more message would not have fitted.
        let oneMore = ServerPacket.roomHistory(roomId: "r", items: Array(items.suffix(kept.count + 1)))
        #expect(!Self.fits(oneMore.json().serialized()))
    }

    @Test func roomListKeepsTheMostRecentlyActiveRooms() throws {
        let rooms = (1...100).map { RoomSummary(roomId: "r\($0)", name: "room \($0)", lastActiveAt: Int64($0 % 10)) }
        let trimmed = try #require(ServerPacket.roomList(rooms).trimmed(toFit: Self.fits))
        guard case .roomList(let kept) = trimmed else { Issue.record("not a room list"); return }
        #expect(!kept.isEmpty && kept.count < 100 && Self.fits(trimmed.json().serialized()))
        #expect(kept.map(\.lastActiveAt) == kept.map(\.lastActiveAt).sorted(by: >))
        #expect(kept.first?.lastActiveAt == 9)
    }

    @Test func packetsThatFitAreUnchanged() {
        let small = ServerPacket.roomList([RoomSummary(roomId: "r", name: "n", lastActiveAt: 1)])
        #expect(small.trimmed(toFit: Self.fits) == small)
        #expect(ServerPacket.error(message: String(repeating: "e", count: 5_000)).trimmed(toFit: Self.fits) == nil)
    }
}
