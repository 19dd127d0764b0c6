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
}
