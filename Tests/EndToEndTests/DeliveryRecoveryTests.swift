import ChatClient
import ChatWire
import Foundation
import Testing

/// Delivery derived from durable state: programs killed and restarted
/// under a steady stream of messages, and a member that only listens (it
/// sends nothing but ACKs, as a web client between its STATUS calls). Every
/// message the sender saw confirmed with MESSAGE_SENT reaches that member
/// once, in commit order.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DeliveryRecoveryTests {
    /// A sender posting a message every `interval` (25 a second), each
    /// after the previous one's MESSAGE_SENT or failure (while a program is
    /// down it falls behind that pace, then catches up).
    final class Sender: Sendable {
        let confirmed = MutexBox<[Int64]>([])
        let failures = MutexBox(0)
        private let stop = MutexBox(false)
        private let task = MutexBox<Task<Void, Never>?>(nil)

        func start(_ client: ChatClient, room: String, interval: Duration = .milliseconds(40)) {
            task.value = Task {
                var n = 0
                var next = ContinuousClock.now
                while !self.stop.value {
                    n += 1
                    do {
                        let sent = try await client.sendMessage(roomId: room, content: "message \(n)")
                        self.confirmed.mutate { $0.append(sent.messageId) }
                    } catch {
                        self.failures.mutate { $0 += 1 }
                    }
                    next = max(next + interval, ContinuousClock.now - interval * 25)
                    try? await Task.sleep(until: next)
                }
            }
        }

        /// Waits until `more` messages beyond those confirmed so far are confirmed.
        func waitForProgress(_ more: Int = 25, within limit: Duration = .seconds(20)) async -> Bool {
            let target = confirmed.value.count + more
            let deadline = ContinuousClock.now + limit
            while confirmed.value.count < target {
                if ContinuousClock.now >= deadline { return false }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return true
        }

        func finish() async {
            stop.value = true
            await task.value?.value
        }
    }

    /// The messages `listener` is shown (its client shows a message once by
    /// its `message_id`, as the web client does), until every id in
    /// `expected` was shown or `limit` passed.
    static func shown(by listener: ChatClient, expecting expected: [Int64], within limit: Duration = .seconds(60)) async -> [MessageEvent] {
        var shown: [MessageEvent] = []
        var missing = Set(expected)
        let deadline = ContinuousClock.now + limit
        while !missing.isEmpty && ContinuousClock.now < deadline {
            guard
                let received = await listener.nextEvent(
                    timeout: .seconds(2), where: { if case .message = $0.packet { return true } else { return false } }),
                case .message(let event) = received.packet
            else { continue }
            shown.append(event)
            missing.remove(event.messageId)
        }
        // Anything else already here (copies of messages not confirmed to the sender).
        while let received = await listener.nextEvent(
            timeout: .milliseconds(300), where: { if case .message = $0.packet { return true } else { return false } }),
            case .message(let event) = received.packet
        {
            shown.append(event)
        }
        return shown
    }

    /// MESSAGE copies that reached `client` on the wire, per message id
    /// (for the report: the client showed each once whatever this says).
    static func wireCopies(_ client: ChatClient) -> [Int64: Int] {
        var copies: [Int64: Int] = [:]
        for datagram in client.recordedDatagrams {
            if let received = client.open(datagram), case .message(let event) = received.packet { copies[event.messageId, default: 0] += 1 }
        }
        return copies
    }

    /// Runs `body` with the clients and traffic, and stops them whatever happens.
    static func run(
        _ system: TestSystem, _ body: (ChatClient, ChatClient, RoomRef, Sender) async throws -> Void
    ) async throws {
        let (sender, listener, room) = try await scene(system)
        let traffic = Sender()
        do {
            try await body(sender, listener, room, traffic)
        } catch {
            await traffic.finish()
            await sender.close()
            await listener.close()
            throw error
        }
        await traffic.finish()
        await sender.close()
        await listener.close()
    }

    static func scene(_ system: TestSystem) async throws -> (sender: ChatClient, listener: ChatClient, room: RoomRef) {
        func client(record: Bool) async throws -> ChatClient {
            let client = try await ChatClient(
                options: .init(
                    host: "127.0.0.1", port: system.port, knownHosts: nil, timeout: .seconds(8), retryInterval: .milliseconds(300),
                    recordDatagrams: record))
            try await client.connect()
            return client
        }
        let sender = try await client(record: false)
        let listener = try await client(record: true)
        _ = try await sender.login(email: "sender@example.com")
        _ = try await listener.login(email: "listener@example.com")
        let room = try await sender.createRoom(name: "Steady")
        _ = try await listener.joinRoom(id: room.roomId)
        return (sender, listener, room)
    }

    /// Checks what a member was shown against what the sender had confirmed:
    /// every confirmed message, once, in commit order. The client shows a
    /// message once by its `message_id`, as the web client does, so "once"
    /// is checked where it can fail: no text shown twice (a request sent
    /// again through a restart is carried out once, not stored twice).
    static func check(_ events: [MessageEvent], confirmed: [Int64], failures: Int, _ member: ChatClient, _ label: String) {
        let shown = events.map(\.messageId)
        #expect(confirmed.count >= 100, "\(label): only \(confirmed.count) messages were confirmed")
        let missing = Set(confirmed).subtracting(shown)
        #expect(missing.isEmpty, "\(label): \(missing.count) of \(confirmed.count) confirmed messages never shown: \(missing.sorted().prefix(20))")
        let texts = events.map(\.content)
        #expect(Set(texts).count == texts.count, "\(label): a message was stored twice")
        #expect(shown == shown.sorted(), "\(label): shown out of commit order")
        let copies = wireCopies(member)
        let repeated = copies.values.filter { $0 > 1 }.count
        print(
            "\(label): \(confirmed.count) confirmed (\(failures) sends failed while a program was down), \(shown.count) shown"
                + " (\(shown.count - confirmed.count) committed without MESSAGE_SENT reaching the sender);"
                + " \(repeated) messages arrived more than once on the wire")
    }

    /// Stops the traffic and checks both members: the one that only listens,
    /// and the sender (its own copies).
    static func checkBothMembers(listener: ChatClient, sender: ChatClient, _ traffic: Sender, _ label: String) async {
        await traffic.finish()
        let confirmed = traffic.confirmed.value
        for (member, role) in [(listener, "listener"), (sender, "sender")] {
            check(await shown(by: member, expecting: confirmed), confirmed: confirmed, failures: traffic.failures.value, member, "\(label), \(role)")
        }
    }

    @Test(arguments: SystemDatabase.available) func killingTheEdgeTwiceThenTheStoreTwiceLosesNoConfirmedMessage(_ database: SystemDatabase) async throws {
        try await withSystem(settings: ["RPC_TIMEOUT_MS": "1000"], database: database) { system in
            try await Self.run(system) { sender, listener, room, traffic in
                traffic.start(sender, room: room.roomId)
                #expect(await traffic.waitForProgress(), "messages flow at first")
                for round in 1...2 {
                    try await system.restartEdge(signal: SIGKILL)
                    #expect(await traffic.waitForProgress(), "messages flow after edge restart \(round)")
                }
                for round in 1...2 {
                    try await system.restartStore(signal: SIGKILL)
                    #expect(await traffic.waitForProgress(), "messages flow after store restart \(round)")
                }
                await Self.checkBothMembers(listener: listener, sender: sender, traffic, "SIGKILL edge x2, store x2")
            }
        }
    }

    @Test(arguments: SystemDatabase.available) func aGracefulEdgeRestartLosesNoConfirmedMessage(_ database: SystemDatabase) async throws {
        try await withSystem(database: database) { system in
            try await Self.run(system) { sender, listener, room, traffic in
                traffic.start(sender, room: room.roomId)
                #expect(await traffic.waitForProgress(50), "messages flow at first")
                try await system.restartEdge(signal: SIGTERM)
                #expect(await traffic.waitForProgress(50), "messages flow after the restart")
                await Self.checkBothMembers(listener: listener, sender: sender, traffic, "SIGTERM edge")
            }
        }
    }

    /// A member that said nothing since before the restart gets the next
    /// message: the new edge resumed its session from the store.
    @Test(arguments: SystemDatabase.available) func aSilentMemberGetsTheFirstMessageAfterAnEdgeRestart(_ database: SystemDatabase) async throws {
        try await withSystem(database: database) { system in
            try await Self.run(system) { sender, listener, room, _ in
                let before = try await sender.sendMessage(roomId: room.roomId, content: "before")
                #expect(await Self.shown(by: listener, expecting: [before.messageId]).map(\.messageId) == [before.messageId])
                // Once the edge has reported the listener's cursor past it (event 2:
                // the listener's MEMBER_JOINED was 1), the edge dies.
                let session = try #require(listener.session?.sessionId)
                let deadline = ContinuousClock.now + .seconds(10)
                var cursor = 0
                while cursor < 2 && ContinuousClock.now < deadline {
                    cursor = Int(
                        try await system.queryDatabase(
                            "SELECT c.seq FROM session_cursors c JOIN sessions s ON s.id = c.session_id WHERE s.session_id = ?", [session])
                            ?? "0") ?? 0
                    if cursor < 2 { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(cursor == 2, "the edge reported the listener's cursor")
                try await system.restartEdge(signal: SIGKILL)
                let after = try await sender.sendMessage(roomId: room.roomId, content: "after")
                let shown = await Self.shown(by: listener, expecting: [after.messageId], within: .seconds(20))
                #expect(shown.map(\.messageId).contains(after.messageId), "the silent member never got the message sent after the restart")
            }
        }
    }
}
