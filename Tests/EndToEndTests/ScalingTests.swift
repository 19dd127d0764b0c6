import ChatClient
import Common
import Foundation
import Testing

/// Several stores on one PostgreSQL database behind one edge.
@Suite(.serialized) struct ScalingTests {
    /// Two stores: the edge spreads requests over both and merges their
    /// event streams, so members see each other's messages in order; one
    /// store is killed and the other serves every request after it, with no
    /// confirmed message lost.
    @Test(.enabled(if: SystemDatabase.available.contains(.postgres), "needs UDPCHAT_TEST_POSTGRES (scripts/test.sh starts a server)"))
    func twoStoresServeOneEdgeAndOneTakesOverWhenTheOtherDies() async throws {
        try await withSystem(settings: ["RPC_TIMEOUT_MS": "1000"], database: .postgres) { system in
            let second = try await system.startStore("store2")
            let first = (store: "ipc://\(system.root.path)/run/store.sock", events: "ipc://\(system.root.path)/run/events.sock")
            let port = system.port
            await system.edge.stop(signal: SIGTERM)
            try await system.startEdge(
                port: port,
                extra: ["STORE_ENDPOINT": "\(first.store),\(second.store)", "EVENTS_ENDPOINT": "\(first.events),\(second.events)"])

            let alice = try await system.client()
            let bob = try await system.client()
            _ = try await alice.login(email: "alice@example.com")
            _ = try await bob.login(email: "bob@example.com")
            let room = try await alice.createRoom(name: "Both stores")
            _ = try await bob.joinRoom(id: room.roomId)

            // Both ways, in turns: every message reaches the other member, in order.
            var sent: [Int64] = []
            for index in 0..<20 {
                let sender = index.isMultiple(of: 2) ? alice : bob
                sent.append(try await sender.sendMessage(roomId: room.roomId, content: "turn \(index)").messageId)
            }
            let shownToBob = await DeliveryRecoveryTests.shown(by: bob, expecting: sent)
            let shownToAlice = await DeliveryRecoveryTests.shown(by: alice, expecting: sent)
            #expect(shownToBob.map(\.messageId) == sent, "bob sees every message once, in commit order")
            #expect(shownToAlice.map(\.messageId) == sent, "alice sees every message once, in commit order")
            #expect(sent == sent.sorted())

            // Both stores wrote some of them.
            let firstPort = try OperationsTests.metricsPort(system.store, ready: "udpchat-store ready")
            let secondPort = try OperationsTests.metricsPort(second.process, ready: "udpchat-store ready")
            let storedByFirst = OpsProbe.total(OpsProbe.samples(try OpsProbe.get(port: firstPort, path: "/metrics").body), "udpchat_store_messages_stored_total")
            let storedBySecond = OpsProbe.total(OpsProbe.samples(try OpsProbe.get(port: secondPort, path: "/metrics").body), "udpchat_store_messages_stored_total")
            #expect(storedByFirst > 0 && storedBySecond > 0 && storedByFirst + storedBySecond == 20, "\(storedByFirst) + \(storedBySecond)")

            // The first store dies: requests go to the second, nothing confirmed is lost.
            await system.store.stop(signal: SIGKILL)
            var after: [Int64] = []
            for index in 0..<10 {
                after.append(try await alice.sendMessage(roomId: room.roomId, content: "after \(index)").messageId)
            }
            let shownAfter = await DeliveryRecoveryTests.shown(by: bob, expecting: after)
            #expect(shownAfter.map(\.messageId) == after)
            let stored = try await system.storedMessages()
            #expect(stored == (0..<20).map { "turn \($0)" } + (0..<10).map { "after \($0)" })
        }
    }

    /// A store dies holding an AI job its worker was running: once the
    /// job's lease in the database runs out, the other store takes it and
    /// its worker answers; the reply is stored once and reaches the room.
    @Test(.enabled(if: SystemDatabase.available.contains(.postgres), "needs UDPCHAT_TEST_POSTGRES (scripts/test.sh starts a server)"))
    func anAIJobOfAStoreThatDiesIsAnsweredThroughAnother() async throws {
        try await withSystem(settings: AIJobTests.fast.merging(["RPC_TIMEOUT_MS": "1000"]) { $1 }, database: .postgres) { system in
            let second = try await system.startStore("store2")
            let first = (store: "ipc://\(system.root.path)/run/store.sock", events: "ipc://\(system.root.path)/run/events.sock")
            // The first store's worker is stuck on a model that holds its reply; the second's answers at once.
            let slow = try await system.startProvider("hold", reply: "from the stuck model", delay: 60, name: "slow")
            let quick = try await system.startProvider("hold", reply: "after the takeover", delay: 0, name: "quick")
            _ = try await system.startWorker(["AI_MODE": "gpt", "OPENAI_BASE_URL": slow.baseURL + "/v1"], name: "ai-first")
            _ = try await system.startWorker(
                ["AI_MODE": "gpt", "OPENAI_BASE_URL": quick.baseURL + "/v1", "JOBS_ENDPOINT": "ipc://\(system.root.path)/run/store2-jobs.sock"],
                name: "ai-second")
            // Requests go to the first store; events come from both.
            let port = system.port
            await system.edge.stop(signal: SIGTERM)
            try await system.startEdge(port: port, extra: ["EVENTS_ENDPOINT": "\(first.events),\(second.events)"])
            let scene = try await AIJobTests.Room(system)
            try scene.alice.askAI(roomId: scene.room.roomId, draft: "")
            #expect(await waitUntil(within: .seconds(10)) { !slow.requests().isEmpty }, "the first store's worker runs the job")

            await system.store.stop(signal: SIGKILL)
            await system.edge.stop(signal: SIGTERM)
            try await system.startEdge(port: port, extra: ["STORE_ENDPOINT": second.store, "EVENTS_ENDPOINT": second.events])
            let reply = try #require(await scene.aiMessage(scene.bob, timeout: .seconds(45)))
            #expect(reply.content == "after the takeover")
            #expect(try await system.queryDatabase("SELECT count(*) FROM messages WHERE is_announcement") == "1")
            #expect(try await system.queryDatabase("SELECT count(*) FROM ai_jobs WHERE state = 'queued'") == "0")
            await scene.close()
        }
    }
}
