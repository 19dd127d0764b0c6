import ChatClient
import Common
import Foundation
import Testing

/// AI replies through real `udpchat-ai` workers against stand-in model APIs
/// on loopback that speak each provider's streaming format.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct AIJobTests {
    /// Fast heartbeats so that a lost worker is noticed in well under a second.
    static let fast = ["AI_HEARTBEAT_MS": "200", "AI_LEASE_MS": "2000"]

    /// alice and bob in a room with two messages of history.
    struct Room {
        let alice: ChatClient
        let bob: ChatClient
        let alicesUser: UserInfo
        let room: RoomRef

        init(_ system: TestSystem) async throws {
            alice = try await system.client()
            bob = try await system.client()
            alicesUser = try await alice.login(email: "alice@example.com")
            _ = try await bob.login(email: "bob@example.com")
            room = try await alice.createRoom(name: "Lounge")
            _ = try await bob.joinRoom(id: room.roomId)
            _ = try await alice.sendMessage(roomId: room.roomId, content: "hi")
            _ = try await bob.sendMessage(roomId: room.roomId, content: "how are you?")
        }

        /// The next MESSAGE broadcast `client` receives whose content is not one of the history's.
        func aiMessage(_ client: ChatClient, timeout: Duration = .seconds(10)) async -> MessageEvent? {
            let received = await client.nextEvent(timeout: timeout) {
                if case .message(let event) = $0.packet { return !["hi", "how are you?"].contains(event.content) }
                return false
            }
            if case .message(let event)? = received?.packet { return event }
            return nil
        }

        /// The next late ERROR (an AI failure) `client` receives.
        func aiError(_ client: ChatClient, timeout: Duration = .seconds(10)) async -> String? {
            let received = await client.nextEvent(timeout: timeout) {
                if case .error = $0.packet { return true }
                return false
            }
            if case .error(let message)? = received?.packet { return message }
            return nil
        }

        func close() async {
            await alice.close()
            await bob.close()
        }
    }

    @Test func openAIGeneratesAndImprovesWithHistoryRolesAndModel() async throws {
        try await withSystem(settings: Self.fast) { system in
            let provider = try await system.startProvider("ok", reply: "\"alice: Sounds good to me\"")
            try await system.startWorker([
                "AI_MODE": "gpt", "OPENAI_BASE_URL": provider.baseURL + "/v1", "OPENAI_API_KEY": "sk-test", "AI_MODEL": "test-model",
            ])
            let scene = try await Room(system)
            try scene.alice.askAI(roomId: scene.room.roomId, draft: "")
            for client in [scene.alice, scene.bob] {
                let reply = try #require(await scene.aiMessage(client))
                // Cleaned (no quotes, no name prefix) and attributed to the requester (PROTOCOL.md §5.12).
                #expect(reply.content == "Sounds good to me" && reply.userId == scene.alicesUser.userId && reply.name == "alice")
            }
            let request = try #require(provider.requests().first)
            #expect(request["path"] == "/v1/chat/completions")
            #expect(request["headers"]?.objectValue?["authorization"] == "Bearer sk-test")
            let body = try #require(request["body"]?.objectValue)
            #expect(body["model"] == "test-model" && body["stream"] == true)
            #expect(body["temperature"] == 0.9 && body["max_tokens"] == 300)
            let messages = (body["messages"]?.arrayValue ?? []).compactMap { $0.objectValue }
            #expect(messages.map { $0["role"]?.stringValue } == ["system", "user", "user", "user"])
            // The history, oldest first (the original sent it newest first).
            #expect(messages[1]["content"] == "alice: hi" && messages[2]["content"] == "bob: how are you?")

            // Improve mode: the draft goes into the task; the reply is stored as alice's message.
            try scene.alice.askAI(roomId: scene.room.roomId, draft: "pls come 2 party")
            let improved = try #require(await scene.aiMessage(scene.bob))
            #expect(improved.content == "Sounds good to me" && improved.userId == scene.alicesUser.userId)
            let second = try #require(provider.requests().last?["body"]?.objectValue?["messages"]?.arrayValue)
            #expect(second.last?.objectValue?["content"]?.stringValue?.contains("pls come 2 party") == true)
            #expect(second.count == 5)  // system, three messages of history, the task
            let history = try await scene.bob.history(roomId: scene.room.roomId)
            #expect(history.map(\.content) == ["hi", "how are you?", "Sounds good to me", "Sounds good to me"])
            await scene.close()
        }
    }
}
