import ChatClient
import ChatWire
import Foundation
import Testing

/// Two (and three) clients talking through the real programs, checking what
/// docs/protocol.md §5 and §6 say they see.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ConversationTests {
    @Test func handshakeRepliesWithTheFiveFieldsSignedWithASalt32PSS() async throws {
        try await withSystem { system in
            let shown = try await system.run("udpchat-keys", ["show"]).output
            let client = try await ChatClient(options: .init(host: "127.0.0.1", port: system.port, knownHosts: nil, recordDatagrams: true))
            let session = try await client.connect()  // verifies fingerprint, OAEP and PSS (salt 32)
            let reply = try #require(try JSONParser.parse(client.recordedDatagrams[0]).objectValue)
            #expect(Set(reply.members.map(\.key)) == ["type", "session_id", "encrypted_key", "server_pubkey", "signature", "fingerprint"])
            for key in ["session_id", "encrypted_key", "server_pubkey", "signature", "fingerprint"] {
                let text = try #require(reply[key]?.stringValue)
                #expect(Hex.decode(text) != nil, "\(key) is lowercase hex")
            }
            #expect(session.sessionId.count == 32)
            #expect(reply["signature"]?.stringValue?.count == 512 && reply["server_pubkey"]?.stringValue?.count == 588)
            #expect(reply["encrypted_key"]?.stringValue?.count == 512)
            #expect(shown.contains(session.fingerprint))
            #expect(
                HandshakeCrypto.verify(
                    signature: Hex.decode(reply["signature"]!.stringValue!)!, over: session.sessionKey,
                    publicKeyDER: session.serverPublicKeyDER))
            #expect(try await client.hello() == "Welcome to UDPChat-AI.")
            // The later web client's 1024-bit keys work too.
            let small = try await system.client(keyBits: 1024)
            #expect(try await small.hello() == "Welcome to UDPChat-AI.")
            await client.close()
            await small.close()
        }
    }

    @Test(arguments: SystemDatabase.available) func twoClientsLoginCreateJoinChatAndLeave(_ database: SystemDatabase) async throws {
        try await withSystem(database: database) { system in
            let alice = try await system.client()
            let bob = try await system.client()
            let bobElsewhere = try await system.client()
            let anonymous = try await system.client()

            // LOGIN creates the user; STATUS shapes.
            #expect(try await anonymous.status() == .empty)
            let aliceUser = try await alice.login(email: "Alice@Example.com")
            #expect(aliceUser.email == "alice@example.com" && aliceUser.name == "alice" && aliceUser.room == nil)
            let bobUser = try await bob.login(email: "bob@example.com")
            #expect(try await bobElsewhere.login(email: "bob@example.com").userId == bobUser.userId)
            #expect(try await alice.status() == .user(aliceUser))
            await #expect(throws: ChatClientError.refused("Please provide a valid email address")) {
                try await anonymous.login(email: "nobody")
            }

            // CREATE_ROOM answers the creator and broadcasts the list to every active session.
            await #expect(throws: ChatClientError.refused("Authentication required.")) { try await anonymous.createRoom(name: "x") }
            let room = try await alice.createRoom(name: "General")
            #expect(room.name == "General")
            for client in [alice, bob, anonymous] {
                let list = try await client.expectEvent { if case .roomList = $0.packet { return true } else { return false } }
                #expect(list.msgId?.count == 32)
                guard case .roomList(let rooms) = list.packet else { continue }
                #expect(rooms.map(\.roomId) == [room.roomId])
            }
            let rooms = try await bob.listRooms()
            #expect(rooms.count == 1 && rooms[0].name == "General" && rooms[0].lastActiveAt > 1_700_000_000)

            // JOIN_ROOM: the joiner's session and the members get MEMBER_JOINED; the joiner's
            // other session gets ROOM_JOINED.
            #expect(try await bob.joinRoom(id: room.roomId) == room)
            for client in [alice, bob] {
                let joined = try await client.expectEvent { if case .memberJoined = $0.packet { return true } else { return false } }
                guard case .memberJoined(let roomId, let member) = joined.packet else { continue }
                #expect(roomId == room.roomId && member.userId == bobUser.userId && member.name == "bob" && !member.isAdmin)
            }
            let elsewhere = try await bobElsewhere.expectEvent { if case .roomJoined = $0.packet { return true } else { return false } }
            #expect(elsewhere.packet == .roomJoined(roomId: room.roomId, roomName: "General"))
            // Joining again answers JOINED_ROOM again and broadcasts nothing.
            #expect(try await bob.joinRoom(id: room.roomId) == room)
            let again = await alice.nextEvent(timeout: .milliseconds(800)) {
                if case .memberJoined = $0.packet { return true } else { return false }
            }
            #expect(again == nil)
            let members = try await alice.members(roomId: room.roomId)
            #expect(members.map(\.name) == ["alice", "bob"] && members.map(\.isAdmin) == [true, false])

            // MESSAGE: MESSAGE_SENT to the sender, the broadcast to every member, sender included,
            // each copy with its own msg_id.
            let sent = try await alice.sendMessage(roomId: room.roomId, content: "  Hi all  ")
            var copies: [String] = []
            for client in [alice, bob] {
                let copy = try await client.expectEvent { if case .message = $0.packet { return true } else { return false } }
                #expect(
                    copy.packet
                        == .message(
                            MessageEvent(
                                roomId: room.roomId, messageId: sent.messageId, userId: aliceUser.userId, name: "alice",
                                content: "Hi all", timestamp: sent.timestamp)))
                copies.append(try #require(copy.msgId))
            }
            #expect(Set(copies).count == 2 && copies.allSatisfy { $0.count == 32 })

            // History in commit order, also within one second.
            var expected = ["Hi all"]
            for i in 0..<6 {
                let sender = i % 2 == 0 ? bob : alice
                _ = try await sender.sendMessage(roomId: room.roomId, content: "m\(i)")
                expected.append("m\(i)")
            }
            let history = try await bob.history(roomId: room.roomId)
            #expect(history.map(\.content) == expected)
            #expect(history.map(\.messageId) == history.map(\.messageId).sorted())
            await #expect(throws: ChatClientError.refused("Room not found.")) {
                _ = try await bobElsewhere.sendMessage(roomId: "ffffffffffffffffffffffffffffffff", content: "x")
            }

            // LEAVE_ROOM: the others get MEMBER_LEFT, the leaver's other session ROOM_LEFT.
            #expect(try await bob.leaveRoom(id: room.roomId) == room)
            let left = try await alice.expectEvent { if case .memberLeft = $0.packet { return true } else { return false } }
            #expect(left.packet == .memberLeft(roomId: room.roomId, memberId: bobUser.userId))
            let leftElsewhere = try await bobElsewhere.expectEvent {
                if case .roomLeft = $0.packet { return true } else { return false }
            }
            #expect(leftElsewhere.packet == .roomLeft(roomId: room.roomId, roomName: "General"))
            await #expect(throws: ChatClientError.refused("You must join the room before sending messages.")) {
                _ = try await bob.sendMessage(roomId: room.roomId, content: "x")
            }

            // AI_MESSAGE's checks answer with ERROR at once (docs/protocol.md §5.12).
            for (client, text) in [
                (anonymous, "Authentication required."), (bob, "You must join the room to request AI messages."),
            ] {
                try client.askAI(roomId: room.roomId, draft: "")
                let refused = try await client.expectEvent { if case .error = $0.packet { return true } else { return false } }
                #expect(refused.packet == .error(message: text) && refused.msgId == nil)
            }

            // LOGOUT answers STATUS with user null; STATUS then says {}.
            guard case .status(let sessionId, let user) = try await alice.request(.logout, expecting: ["STATUS"]) else {
                Issue.record("LOGOUT did not answer STATUS")
                return
            }
            #expect(sessionId == alice.session?.sessionId && user == .null)
            #expect(try await alice.status() == .empty)
            await #expect(throws: ChatClientError.refused("You are not logged in.")) { try await alice.logout() }
            // The user's current room is reported at the next login.
            #expect(try await alice.login(email: "alice@example.com").room == room)
            for client in [alice, bob, bobElsewhere, anonymous] { await client.close() }
        }
    }

    @Test func retransmissionStopsOnceAcknowledged() async throws {
        try await withSystem(settings: ["RETRY_MODE": "fixed", "RETRY_INTERVAL_MS": "300", "RETRY_TRANSMISSIONS": "5"]) { system in
            let alice = try await system.client(record: true)
            let silent = try await system.client(acknowledge: false, record: true)
            _ = try await alice.login(email: "alice@example.com")
            _ = try await silent.login(email: "carol@example.com")
            let room = try await alice.createRoom(name: "Acks")
            _ = try await silent.joinRoom(id: room.roomId)
            let sent = try await alice.sendMessage(roomId: room.roomId, content: "count me")
            func copies(_ client: ChatClient) -> [ServerPacket.Received] {
                client.recordedDatagrams.compactMap(client.open).filter {
                    if case .message(let event) = $0.packet { return event.messageId == sent.messageId }
                    return false
                }
            }
            // The edge is done with the copy once it holds none unacknowledged:
            // carol's was sent its five times and given up, alice's acknowledged.
            #expect(await waitUntil { copies(silent).count >= 5 })
            #expect(try await waitUntil { try system.edgeMetric("udpchat_edge_unacknowledged_copies") == 0 })
            let unacknowledged = copies(silent)
            #expect(unacknowledged.count == 5)
            #expect(Set(unacknowledged.compactMap(\.msgId)).count == 1)
            let acknowledged = copies(alice)
            #expect(acknowledged.count == 1)
            await alice.close()
            await silent.close()
        }
    }

    @Test func theEdgeRestartsMidSessionAndTheSessionKeepsWorking() async throws {
        try await withSystem { system in
            let alice = try await system.client()
            let aliceUser = try await alice.login(email: "alice@example.com")
            let room = try await alice.createRoom(name: "Lobby")
            let before = try await alice.sendMessage(roomId: room.roomId, content: "before")
            let captured = try alice.sealed(.message(roomId: room.roomId, content: "replayed"))
            try alice.sendRaw(captured)
            let replayedOnce = try await alice.expectEvent {
                if case .message(let event) = $0.packet { return event.content == "replayed" } else { return false }
            }
            #expect(replayedOnce.msgId != nil)

            try await system.restartEdge(signal: SIGKILL)

            // Same session id and key: the edge restores it from the store.
            #expect(
                try await alice.status()
                    == .user(
                        UserInfo(
                            email: aliceUser.email, name: "alice", userId: aliceUser.userId,
                            room: RoomRef(roomId: room.roomId, name: "Lobby"))))
            let after = try await alice.sendMessage(roomId: room.roomId, content: "after")
            #expect(after.messageId > before.messageId)
            // A datagram accepted before the restart is still a replay after it.
            guard case .serverError(let text) = try await alice.exchange(captured, expecting: ["SERVER_ERROR"]) else {
                Issue.record("replay after restart was not refused")
                return
            }
            #expect(text == "This nonce was already used")
            #expect(try await alice.history(roomId: room.roomId).map(\.content) == ["before", "replayed", "after"])

            // Broadcasts reach the restored session again.
            let bob = try await system.client()
            _ = try await bob.login(email: "bob@example.com")
            _ = try await bob.joinRoom(id: room.roomId)
            _ = try await bob.sendMessage(roomId: room.roomId, content: "welcome back")
            let heard = try await alice.expectEvent {
                if case .message(let event) = $0.packet { return event.content == "welcome back" } else { return false }
            }
            #expect(heard.msgId != nil)

            // A graceful restart too.
            try await system.restartEdge(signal: SIGTERM)
            #expect(try await alice.hello() == "Welcome to UDPChat-AI.")
            await alice.close()
            await bob.close()
        }
    }

    @Test func theEdgeServesIPv6() async throws {
        try await withSystem(settings: ["SERVER_IP": "::1"]) { system in
            #expect(system.edge.output.contains { $0.hasPrefix("udpchat-edge ready udp=[::1]:\(system.port) metrics=http://") })
            let client = try await system.client()
            #expect(try await client.hello() == "Welcome to UDPChat-AI.")
            #expect(try await client.login(email: "six@example.com").name == "six")
            await client.close()
            let (status, output) = try await InteropTests.runPython(["::1", String(system.port)])
            #expect(status == 0, "\(output)")
        }
    }
}
