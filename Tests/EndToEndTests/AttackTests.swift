import ChatClient
import ChatWire
import Foundation
import IPC
import IPCMessages
import Logging
import Testing

/// Hostile and broken datagrams: each gets the protocol's error or is
/// dropped, changes nothing, and the server keeps serving.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct AttackTests {
    /// A room with alice (the victim) and bob, and an attacker's socket.
    struct Scene {
        let alice: ChatClient
        let bob: ChatClient
        let attacker: ChatClient
        let room: RoomRef

        init(_ system: TestSystem) async throws {
            (alice, bob, _, room) = try await system.aliceAndBob(in: "Target", record: true)
            attacker = try await system.client()
        }

        /// Whether alice still gets broadcasts at her own address.
        func aliceStillReached(_ marker: String) async throws -> Bool {
            _ = try await bob.sendMessage(roomId: room.roomId, content: marker)
            return await alice.nextEvent(timeout: .seconds(3)) {
                if case .message(let event) = $0.packet { return event.content == marker } else { return false }
            } != nil
        }

        func close() async {
            for client in [alice, bob, attacker] { await client.close() }
        }
    }

    /// `text` followed by spaces up to 40 bytes.
    static func padded(_ text: String) -> [UInt8] { Array((text + String(repeating: " ", count: max(0, 40 - text.utf8.count))).utf8) }

    static func serverError(_ client: ChatClient, _ datagram: [UInt8]) async throws -> String? {
        guard case .serverError(let text) = try await client.exchange(datagram, expecting: ["SERVER_ERROR"], timeout: .seconds(3)) else {
            return nil
        }
        return text
    }

    /// True when nothing at all comes back within `wait`.
    static func silent(_ client: ChatClient, _ datagram: [UInt8], wait: Duration = .milliseconds(700)) async -> Bool {
        do {
            _ = try await client.exchange(datagram, expecting: ["SERVER_ERROR", "SECURE_MSG", "ERROR"], timeout: wait)
            return false
        } catch {
            return (error as? ChatError)?.code == .noAnswer
        }
    }

    @Test func replayedDatagramsAreRefusedOrAnsweredAgainButNeverCarriedOutTwice() async throws {
        try await withSystem { system in
            let scene = try await Scene(system)
            let datagram = try scene.alice.sealed(.message(roomId: scene.room.roomId, content: "once"))
            try scene.alice.sendRaw(datagram)
            _ = try await scene.alice.expectEvent {
                if case .message(let e) = $0.packet { return e.content == "once" } else { return false }
            }
            // From alice's own address the repeat gets the very same reply
            // datagram (a client retrying after a lost reply) and posts nothing twice.
            _ = try await scene.alice.expectEvent { if case .messageSent = $0.packet { return true } else { return false } }
            let before = scene.alice.recordedDatagrams
            try scene.alice.sendRaw(datagram)
            func repeats() -> [[UInt8]] { scene.alice.recordedDatagrams.dropFirst(before.count).filter { before.contains($0) } }
            #expect(await waitUntil(within: .seconds(10)) { !repeats().isEmpty })
            let original = try #require(repeats().first)
            guard case .messageSent(_, _, let content, _)? = scene.alice.open(original)?.packet else {
                Issue.record("the repeated datagram is not the MESSAGE_SENT")
                return
            }
            #expect(content == "once")
            // From another address it is a replay, and alice's address does not move.
            #expect(try await Self.serverError(scene.attacker, datagram) == "This nonce was already used")
            #expect(try await scene.aliceStillReached("still here 1"))
            #expect(try await scene.alice.history(roomId: scene.room.roomId).filter { $0.content == "once" }.count == 1)
            #expect(try await scene.alice.hello() == "Welcome to UDPChat-AI.")
            await scene.close()
        }
    }

    @Test func tamperedCiphertextIsRefusedAndMovesNothing() async throws {
        try await withSystem { system in
            let scene = try await Scene(system)
            var datagram = try JSONParser.parse(try scene.alice.sealed(.message(roomId: scene.room.roomId, content: "forged"))).objectValue!
            var hex = Array(datagram["ciphertext"]!.stringValue!)
            hex[4] = hex[4] == "0" ? "1" : "0"
            datagram.append("ciphertext", .string(String(hex)))
            let forged = JSONValue.object(datagram).serialized()
            #expect(try await Self.serverError(scene.attacker, forged) == "Message decryption failed: Invalid key or message.")
            // The genuine packet still works afterwards: the forgery consumed no nonce.
            #expect(try await scene.aliceStillReached("still here 2"))
            #expect(try await scene.alice.history(roomId: scene.room.roomId).allSatisfy { $0.content != "forged" })
            await scene.close()
        }
    }

    @Test func malformedSecureMessagesGetTheProtocolsErrors() async throws {
        try await withSystem { system in
            let scene = try await Scene(system)
            let session = try #require(scene.alice.session?.sessionId)
            let good = try JSONParser.parse(try scene.alice.sealed(.hello)).objectValue!
            func variant(_ key: String, _ value: JSONValue) -> [UInt8] {
                var object = good
                object.append(key, value)
                return JSONValue.object(object).serialized()
            }
            let nonce = good["nonce"]!.stringValue!
            let decryption = "Message decryption failed: Invalid key or message."
            let cases: [(String, [UInt8], String)] = [
                ("uppercase nonce", variant("nonce", .string(nonce.uppercased())), decryption),
                ("odd-length nonce", variant("nonce", .string(String(nonce.dropLast()))), decryption),
                ("8-byte nonce", variant("nonce", .string(String(nonce.prefix(16)))), decryption),
                ("truncated ciphertext", variant("ciphertext", .string("00ff")), decryption),
                ("non-hex ciphertext", variant("ciphertext", .string("zz")), decryption),
                (
                    "missing nonce", Array(#"{"type":"SECURE_MSG","session_id":"\#(session)","ciphertext":"00"}"#.utf8),
                    "Message format is incomplete"
                ),
                ("number nonce", variant("nonce", .int(5)), "Message format is incomplete"),
                (
                    "unknown session", variant("session_id", .string("0123456789abcdef0123456789abcdef")),
                    "Session ID '0123456789abcdef0123456789abcdef' not found"
                ),
                ("not a session id", variant("session_id", .string("nope")), "Session ID 'nope' not found"),
                // Padded with JSON whitespace: a reply may be at most three times its datagram.
                ("non-object JSON", Self.padded("[1,2,3]"), "Invalid message format"),
                ("unknown outer type", Self.padded(#"{"type":"PING"}"#), "Unknown message type 'PING'"),
                ("no client key", Array(#"{"type":"SESSION_INIT"}"#.utf8), "Missing client's public key"),
            ]
            for (name, datagram, text) in cases {
                #expect(try await Self.serverError(scene.attacker, datagram) == text, "\(name)")
                #expect(try await scene.alice.hello() == "Welcome to UDPChat-AI.", "serving after \(name)")
            }
            for (name, datagram) in [
                ("invalid base64", Array(#"{"type":"SESSION_INIT","client_key":"***"}"#.utf8)),
                ("not an RSA key", Array(#"{"type":"SESSION_INIT","client_key":"aGVsbG8="}"#.utf8)),
                ("not JSON", Self.padded("{\"type\": ")),
                ("65,507-byte datagram", Array(repeating: UInt8(ascii: "x"), count: 65_507)),
                ("oversized datagram", Array(repeating: UInt8(ascii: " "), count: 9000)),
            ] {
                let text = try await Self.serverError(scene.attacker, datagram)
                #expect(text?.hasPrefix("Packet processing failure: ") == true, "\(name): \(text ?? "nil")")
                #expect(try await scene.alice.hello() == "Welcome to UDPChat-AI.", "serving after \(name)")
            }
            // Bad fields inside an authenticated packet get the inner ERROR clients display.
            let wrongType = try scene.alice.sealed(json: Array(#"{"type":"MESSAGE","data":{"room_id":5,"content":"x"}}"#.utf8))
            guard case .packet(let received) = try await scene.alice.exchange(wrongType, expecting: ["ERROR"]) else {
                Issue.record("no inner ERROR")
                return
            }
            #expect(received.packet == .error(message: #"Packet processing failure: "room_id" must be a string, not a number"#))
            guard
                case .packet(let unknown) = try await scene.alice.exchange(
                    try scene.alice.sealed(json: Array(#"{"type":"NOPE"}"#.utf8)), expecting: ["ERROR"])
            else {
                Issue.record("no inner ERROR")
                return
            }
            #expect(unknown.packet == .error(message: "Unknown packet type: NOPE"))
            await scene.close()
        }
    }

    @Test func reflectedServerPacketsAreDroppedWithoutEffect() async throws {
        try await withSystem { system in
            let scene = try await Scene(system)
            _ = try await scene.alice.sendMessage(roomId: scene.room.roomId, content: "original")
            _ = try await scene.bob.expectEvent {
                if case .message(let e) = $0.packet { return e.content == "original" } else { return false }
            }
            // Bob's copy of alice's MESSAGE, sent back to the server, would re-post it as bob (docs/protocol.md §12 item 5).
            let reflected = try #require(
                scene.bob.recordedDatagrams.first { datagram in
                    if case .message(let event)? = scene.bob.open(datagram)?.packet { return event.content == "original" }
                    return false
                })
            #expect(await Self.silent(scene.bob, reflected))
            #expect(await Self.silent(scene.attacker, reflected))
            // An inner packet carrying msg_id, as only server broadcasts do, is dropped too.
            let withMsgId = try scene.bob.sealed(
                json: Array(#"{"type":"MESSAGE","data":{"room_id":"\#(scene.room.roomId)","content":"x"},"msg_id":"m"}"#.utf8))
            #expect(await Self.silent(scene.bob, withMsgId))
            #expect(try await scene.alice.history(roomId: scene.room.roomId).map(\.content) == ["original"])
            #expect(try await scene.bob.hello() == "Welcome to UDPChat-AI.")
            await scene.close()
        }
    }

    @Test func handshakesLeaveNoRowsUntilAPacketAuthenticates() async throws {
        try await withSystem { system in
            let reactor = ZMQReactor(context: ZMQContext(), name: "test-store-client")
            let store = StoreClient(
                rpc: try RPCClient(
                    reactor: reactor, endpoint: "ipc://\(system.root.path)/run/store.sock", name: "store", logger: Logger(label: "test")),
                timeout: .seconds(5))
            reactor.start()
            defer { reactor.shutdown() }
            func stored(_ id: String) async throws -> Bool {
                var request = IPCStoreRequest()
                request.loadSession.sessionID = id
                return try await store.call(request).loadedSession.found
            }
            let client = try await system.client()
            let id = try #require(client.session?.sessionId)
            #expect(try await stored(id) == false)
            // A packet that fails its tag creates nothing either.
            var forged = try JSONParser.parse(try client.sealed(.hello)).objectValue!
            forged.append("ciphertext", .string("00112233445566778899aabbccddeeff00"))
            _ = try await Self.serverError(client, JSONValue.object(forged).serialized())
            #expect(try await stored(id) == false)
            #expect(try await client.hello() == "Welcome to UDPChat-AI.")
            // The first authenticated packet stores it; the write follows the reply closely.
            #expect(try await waitUntil(within: .seconds(10)) { try await stored(id) })
            await client.close()
        }
    }
}
