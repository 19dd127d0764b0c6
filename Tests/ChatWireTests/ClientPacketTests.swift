import ChatWire
import Testing

@Suite struct ClientPacketTests {
    static let all: [ClientPacket] = [
        .ack(msgId: "0123456789abcdef0123456789abcdef"), .hello, .login(email: "a@example.com", password: nil),
        .login(email: "a@example.com", password: " secret "), .logout, .status,
        .mergeSession(oldSessionId: "ab", oldSessionKey: "cd"), .listRooms, .createRoom(name: "General"),
        .joinRoom(roomId: "r1"), .leaveRoom(roomId: "r1"), .message(roomId: "r1", content: "hi"),
        .aiMessage(roomId: "r1", content: ""), .listMessages(roomId: "r1"), .listMessages(roomId: nil),
        .listMembers(roomId: "r1"), .listMembers(roomId: nil),
    ]

    @Test func everyPacketRoundTrips() throws {
        for packet in Self.all {
            #expect(try ClientPacket.decode(packet.json.serialized()) == packet, "\(packet.typeName)")
        }
    }

    @Test func packetsHaveTheClientsShape() throws {
        #expect(
            ClientPacket.message(roomId: "r", content: "c").json
                == ["type": "MESSAGE", "data": ["room_id": "r", "content": "c"]])
        #expect(ClientPacket.hello.json == ["type": "HELLO", "data": [:]])
    }

    /// docs/protocol.md §5.0 and §5.3: text is trimmed, the email lower-cased, the password kept.
    @Test func decodingAppliesTheTextRules() throws {
        let login = try ClientPacket.decode(Array(#"{"type":"LOGIN","data":{"email":"  Alice@Example.COM ","password":" pw "}}"#.utf8))
        #expect(login == .login(email: "alice@example.com", password: " pw "))
        let message = try ClientPacket.decode(Array(#"{"type":"MESSAGE","data":{"room_id":" r ","content":"\n hi \t"}}"#.utf8))
        #expect(message == .message(roomId: "r", content: "hi"))
    }

    @Test func absentDataAndNullFieldsReadAsEmpty() throws {
        #expect(try ClientPacket.decode(Array(#"{"type":"JOIN_ROOM"}"#.utf8)) == .joinRoom(roomId: ""))
        #expect(try ClientPacket.decode(Array(#"{"type":"JOIN_ROOM","data":null}"#.utf8)) == .joinRoom(roomId: ""))
        #expect(try ClientPacket.decode(Array(#"{"type":"CREATE_ROOM","data":{"name":null}}"#.utf8)) == .createRoom(name: ""))
        #expect(try ClientPacket.decode(Array(#"{"type":"ACK","data":{}}"#.utf8)) == .ack(msgId: nil))
    }

    @Test(arguments: [
        (#"{"type":"NOPE"}"#, ClientPacket.DecodeError.unknownType("NOPE")),
        (#"{"data":{}}"#, .unknownType("None")),
        (#"{"type":7}"#, .unknownType("7")),
        (#"{"type":"MESSAGE","data":[]}"#, .invalidField("\"data\" must be an object, not an array")),
        (#"{"type":"MESSAGE","data":{"room_id":5,"content":"x"}}"#, .invalidField("\"room_id\" must be a string, not a number")),
        (#"{"type":"MESSAGE","data":{},"msg_id":"x"}"#, .reflected),
    ])
    func badPacketsAreTypedErrors(text: String, error: ClientPacket.DecodeError) {
        #expect(throws: error) { try ClientPacket.decode(Array(text.utf8)) }
    }

    @Test func errorTextsAreTheProtocols() {
        #expect(ClientPacket.DecodeError.unknownType("NOPE").errorText == "Unknown packet type: NOPE")
        #expect(ClientPacket.DecodeError.unknownType("None").errorText == "Unknown packet type: None")
        #expect(ClientPacket.DecodeError.reflected.errorText == nil)
        #expect(ClientPacket.DecodeError.malformed("x").errorText == "Packet processing failure: x")
    }

    @Test func nonJSONAndNonObjectsAreMalformed() {
        for text in ["not json", "[1]", "\"s\""] {
            #expect {
                try ClientPacket.decode(Array(text.utf8))
            } throws: { error in
                if case .malformed = error as? ClientPacket.DecodeError { return true }
                return false
            }
        }
    }
}
