import ChatClient
import ChatWire
import Foundation
import NIOCore
import Testing

/// Delivery over a bad path: loss, reordering and duplication between the
/// clients and the edge. `UDPCHAT_LONG_TESTS=1` runs the full 300 messages;
/// CI runs 30.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct LossTests {
    static let long = ProcessInfo.processInfo.environment["UDPCHAT_LONG_TESTS"] == "1"

    @Test func thirtyPercentLossWithReorderingAndDuplicationLosesNothingAndKeepsOrder() async throws {
        let messagesPerClient = Self.long ? 100 : 10
        try await withSystem { system in
            let proxy = try await LossyProxy(
                upstream: try SocketAddress(ipAddress: "127.0.0.1", port: system.port),
                impairments: Impairments(drop: 0.3, duplicate: 0.1, reorder: 0.2), seed: 0x5EED)
            defer { Task { await proxy.close() } }
            var clients: [ChatClient] = []
            for _ in 0..<3 {
                let client = try await ChatClient(
                    options: .init(
                        host: "127.0.0.1", port: proxy.port, knownHosts: nil, timeout: .seconds(30), retryInterval: .milliseconds(300),
                        recordDatagrams: true))
                try await client.connect()
                clients.append(client)
            }
            let names = ["alice", "bob", "carol"]
            for (client, name) in zip(clients, names) { _ = try await client.login(email: "\(name)@example.com") }
            let room = try await clients[0].createRoom(name: "Lossy")
            for client in clients.dropFirst() { _ = try await client.joinRoom(id: room.roomId) }

            // Ordering is promised to clients that acknowledge: wait until an ACK
            // of each client has got through the path.
            for client in clients { #expect(try await proxy.waitUntilAcknowledged(client)) }

            // Everyone sends at once; each sender waits for its MESSAGE_SENT.
            let sent = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        var ids: [Int64] = []
                        for n in 0..<messagesPerClient {
                            ids.append(try await client.sendMessage(roomId: room.roomId, content: "\(names[index]) \(n)").messageId)
                        }
                        return ids
                    }
                }
                return try await group.reduce(into: [Int64]()) { $0 += $1 }
            }
            let committed = sent.sorted()
            #expect(committed.count == 3 * messagesPerClient && Set(committed).count == committed.count)

            // Like the web client, each client says STATUS now and then, so
            // it keeps receiving broadcasts while it only listens.
            let everyone = clients
            let keepAlive = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(5))
                    for client in everyone { _ = try? await client.status() }
                }
            }
            defer { keepAlive.cancel() }
            // Every member sees every message, once each, in commit order.
            for (client, name) in zip(clients, names) {
                var shown: [Int64] = []
                let deadline = ContinuousClock.now + .seconds(Self.long ? 600 : 120)
                while shown.count < committed.count && ContinuousClock.now < deadline {
                    guard
                        let received = await client.nextEvent(
                            timeout: .seconds(5), where: { if case .message = $0.packet { return true } else { return false } }),
                        case .message(let event) = received.packet
                    else { continue }
                    shown.append(event.messageId)
                }
                #expect(shown == committed, "\(name) saw \(shown.count) of \(committed.count)")
            }
            #expect(try await clients[0].history(roomId: room.roomId).count == min(100, committed.count))
            let counts = proxy.counts
            print("lossy path: \(counts.forwarded) forwarded, \(counts.dropped) dropped, \(counts.duplicated) duplicated")
            for client in clients { await client.close() }
        }
    }
}
