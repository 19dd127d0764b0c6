import ChatClient
import ChatWire
import Foundation
import NIOCore
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

            let (alice, bob, _, room) = try await system.aliceAndBob(in: "Both stores")

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

    /// Two stores and three edges: clients on different edges share a room
    /// and see each other's messages in order; an edge is killed and its
    /// client, re-routed to another edge as a load balancer would, keeps
    /// its session and misses no message; a store is killed and requests go
    /// to the other.
    @Test(.enabled(if: SystemDatabase.available.contains(.postgres), "needs UDPCHAT_TEST_POSTGRES (scripts/test.sh starts a server)"))
    func threeEdgesAndTwoStoresLoseNoMessageWhenAnEdgeAndAStoreDie() async throws {
        try await withSystem(settings: ["RPC_TIMEOUT_MS": "1000"], database: .postgres) { system in
            let second = try await system.startStore("store2")
            let stores = "ipc://\(system.root.path)/run/store.sock,\(second.store)"
            let streams = "ipc://\(system.root.path)/run/events.sock,\(second.events)"
            await system.edge.stop(signal: SIGTERM)
            var edges: [(process: ProgramProcess, port: Int)] = []
            for name in ["edge-a", "edge-b", "edge-c"] {
                edges.append(try await system.startEdge(named: name, extra: ["STORE_ENDPOINT": stores, "EVENTS_ENDPOINT": streams, "EDGE_ID": name]))
            }
            // A balancer in front: each client's datagrams go to one edge until it is moved.
            var proxies: [LossyProxy] = []
            var clients: [ChatClient] = []
            for (index, email) in ["alice@example.com", "bob@example.com", "carol@example.com"].enumerated() {
                let proxy = try await LossyProxy(
                    upstream: try SocketAddress(ipAddress: "127.0.0.1", port: edges[index].port), impairments: Impairments(), seed: UInt64(index))
                proxies.append(proxy)
                let client = try await system.client(port: proxy.port)
                _ = try await client.login(email: email)
                clients.append(client)
            }
            let (alice, bob, carol) = (clients[0], clients[1], clients[2])
            let room = try await alice.createRoom(name: "Three edges")
            _ = try await bob.joinRoom(id: room.roomId)
            _ = try await carol.joinRoom(id: room.roomId)

            var sent: [Int64] = []
            func round(_ label: String, _ senders: [ChatClient]) async throws {
                for (index, sender) in senders.enumerated() {
                    sent.append(try await sender.sendMessage(roomId: room.roomId, content: "\(label) \(index)").messageId)
                }
            }
            try await round("first", [alice, bob, carol, alice, bob, carol])
            for client in clients {
                #expect(await DeliveryRecoveryTests.shown(by: client, expecting: sent).map(\.messageId) == sent, "every member, in order")
            }

            // alice's edge dies; bob and carol go on; the balancer sends alice to edge-b.
            var seen = sent
            await edges[0].process.stop(signal: SIGKILL)
            try await round("while alice moves", [bob, carol, bob])
            try await proxies[0].route(to: try SocketAddress(ipAddress: "127.0.0.1", port: edges[1].port))
            try await round("after the move", [alice, carol, alice, bob])
            let missedByAlice = Array(sent[seen.count...])
            #expect(await DeliveryRecoveryTests.shown(by: alice, expecting: missedByAlice).map(\.messageId) == missedByAlice)
            for client in [bob, carol] {
                #expect(await DeliveryRecoveryTests.shown(by: client, expecting: missedByAlice).map(\.messageId) == missedByAlice)
            }

            // Each edge delivers to the sessions it heard last: bob moves to
            // edge-c while edge-b runs on, and edge-b lets him go.
            func sessions(_ edge: (process: ProgramProcess, port: Int)) throws -> Double {
                let port = try OperationsTests.metricsPort(edge.process, ready: "udpchat-edge ready")
                return OpsProbe.total(OpsProbe.samples(try OpsProbe.get(port: port, path: "/metrics").body), "udpchat_edge_sessions")
            }
            try await proxies[1].route(to: try SocketAddress(ipAddress: "127.0.0.1", port: edges[2].port))
            seen = sent
            try await round("bob moved", [bob, alice, carol])
            let afterBobMoved = Array(sent[seen.count...])
            for client in clients {
                #expect(await DeliveryRecoveryTests.shown(by: client, expecting: afterBobMoved).map(\.messageId) == afterBobMoved)
            }
            #expect(try await waitUntil { try sessions(edges[1]) == 1 && sessions(edges[2]) == 2 }, "edge-b: alice; edge-c: bob and carol")
            let bobsEdge = try await system.queryDatabase(
                "SELECT s.edge FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = 'bob@example.com'")
            #expect(bobsEdge == "edge-c")

            // A store dies: the other serves every request after it.
            seen = sent
            await system.store.stop(signal: SIGKILL)
            try await round("one store", [carol, alice, bob, carol])
            let last = Array(sent[seen.count...])
            for client in clients {
                #expect(await DeliveryRecoveryTests.shown(by: client, expecting: last).map(\.messageId) == last)
            }
            #expect(try await system.storedMessages().count == sent.count)
            for proxy in proxies { await proxy.close() }
        }
    }
}
