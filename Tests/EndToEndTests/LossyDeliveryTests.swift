import ChatClient
import ChatWire
import Foundation
import NIOCore
import Testing

/// Many members over a lossy path at a steady rate (ISSUE acceptance:
/// 20 clients in 2 rooms): every message confirmed to its sender is shown
/// to every member of its room once, in commit order. The figures (fan-out
/// latency, the edge's memory) are printed; they are measured, not asserted.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct LossyDeliveryTests {
    static let long = ProcessInfo.processInfo.environment["UDPCHAT_LONG_TESTS"] == "1"

    struct Scenario {
        var impairments: Impairments
        var clients = 20
        var rooms = 2
        /// Messages per second in each room.
        var perRoomRate: Double
        var seconds: Double
        /// How long members may take to be shown everything once sending stops.
        var drain: Duration = .seconds(60)
    }

    struct Outcome {
        /// Per room, the messages confirmed to their senders, in commit order.
        var confirmed: [[Int64]]
        /// Per client, the messages it was shown, in order, and their texts.
        var shown: [[Int64]]
        var texts: [[String]]
        /// Fan-out latencies of what was shown, in ms.
        var latencies: [Double]
        /// The edge's resident memory at the start, and the most it reached.
        var edgeRSS: (before: Int, peak: Int)
        /// The most messages any member was behind (confirmed in its room and
        /// not yet shown to it), sampled every 100 ms.
        var peakBacklog: Int
        var proxy: (forwarded: Int, dropped: Int, duplicated: Int, corrupted: Int)
        /// Messages sent, and sends that failed (no MESSAGE_SENT within the client's timeout).
        var sent: Int
        var refused: Int
    }

    static func rss(_ pid: pid_t) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return 0
    }

    static func run(_ scenario: Scenario, _ system: TestSystem) async throws -> Outcome {
        let proxy = try await LossyProxy(
            upstream: try SocketAddress(ipAddress: "127.0.0.1", port: system.port), impairments: scenario.impairments, seed: 0xC0FFEE)
        let rssBefore = rss(system.edge.pid)
        #expect(rssBefore > 0, "the edge's memory is readable")
        var joined: [ChatClient] = []
        var created: [RoomRef] = []
        do {
            for _ in 0..<scenario.clients {
                let client = try await ChatClient(
                    options: .init(
                        host: "127.0.0.1", port: proxy.port, knownHosts: nil, timeout: .seconds(30), retryInterval: .milliseconds(300),
                        recordDatagrams: true))
                try await client.connect()
                joined.append(client)
            }
            for (index, client) in joined.enumerated() { _ = try await client.login(email: "member\(index)@example.com") }
            for room in 0..<scenario.rooms { created.append(try await joined[room].createRoom(name: "Lossy \(room)")) }
            for (index, client) in joined.enumerated() where index >= scenario.rooms {
                _ = try await client.joinRoom(id: created[index % scenario.rooms].roomId)
            }
            // Commit order is promised to clients that acknowledge: wait until an
            // ACK of each client has got through the path.
            for client in joined { #expect(try await proxy.waitUntilAcknowledged(client)) }
        } catch {
            for client in joined { await client.close() }
            await proxy.close()
            throw error
        }
        let clients = joined
        let rooms = created

        // Every member collects what it is shown, as it arrives, until it has
        // every confirmed message of its room or the drain time passes.
        let expected = MutexBox<[Set<Int64>]?>(nil)
        let shownCounts = MutexBox([Int](repeating: 0, count: clients.count))
        let collectors = clients.enumerated().map { index, client in
            Task { () -> (shown: [Int64], texts: [String], latencies: [Double]) in
                var shown: [Int64] = []
                var texts: [String] = []
                var latencies: [Double] = []
                var deadline: ContinuousClock.Instant?
                while true {
                    if let all = expected.value {
                        if deadline == nil { deadline = ContinuousClock.now + scenario.drain }
                        if all[index % scenario.rooms].isSubset(of: shown) || ContinuousClock.now >= deadline! { break }
                    }
                    guard
                        let received = await client.nextEvent(
                            timeout: .milliseconds(500), where: { if case .message = $0.packet { return true } else { return false } }),
                        case .message(let event) = received.packet
                    else { continue }
                    let arrived = MonotonicClock.now()
                    shown.append(event.messageId)
                    texts.append(event.content)
                    shownCounts.mutate { $0[index] += 1 }
                    if event.content.hasPrefix("t="), let space = event.content.firstIndex(of: " "),
                        let sentAt = UInt64(event.content[event.content.index(event.content.startIndex, offsetBy: 2)..<space]),
                        arrived > sentAt
                    {
                        latencies.append(Double(arrived - sentAt) / 1e6)
                    }
                }
                return (shown, texts, latencies)
            }
        }
        // What the members are behind, and the edge's memory, while it runs.
        let confirmed = MutexBox<[[Int64]]>(Array(repeating: [], count: scenario.rooms))
        let sampling = MutexBox(true)
        let sampler = Task { () -> (backlog: Int, rss: Int) in
            var peak = (backlog: 0, rss: rssBefore)
            while sampling.value {
                let inRoom = confirmed.value.map(\.count)
                let counts = shownCounts.value
                for (index, count) in counts.enumerated() { peak.backlog = max(peak.backlog, inRoom[index % scenario.rooms] - count) }
                peak.rss = max(peak.rss, rss(system.edge.pid))
                try? await Task.sleep(for: .milliseconds(100))
            }
            return peak
        }
        /// Stops what this run started, whatever happened.
        func finish() async -> (backlog: Int, rss: Int) {
            if expected.value == nil { expected.value = Array(repeating: [], count: scenario.rooms) }
            for collector in collectors { _ = await collector.value }
            sampling.value = false
            let peak = await sampler.value
            for client in clients { await client.close() }
            await proxy.close()
            return peak
        }

        // Each room's members take turns sending at the room's rate, without
        // waiting for one another; each send waits for its own MESSAGE_SENT.
        let refused = MutexBox(0)
        let interval = Duration.nanoseconds(Int64(1e9 / scenario.perRoomRate))
        let total = Int(scenario.perRoomRate * scenario.seconds)
        do {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for room in 0..<scenario.rooms {
                let members = clients.indices.filter { $0 % scenario.rooms == room }.map { clients[$0] }
                let roomId = rooms[room].roomId
                group.addTask {
                    try await withThrowingTaskGroup(of: Void.self) { sends in
                        let start = ContinuousClock.now
                        for n in 0..<total {
                            try await Task.sleep(until: start + interval * n)
                            let sender = members[n % members.count]
                            sends.addTask {
                                let text = "t=\(MonotonicClock.now()) room \(room) message \(n)"
                                do {
                                    let sent = try await sender.sendMessage(roomId: roomId, content: text)
                                    confirmed.mutate { $0[room].append(sent.messageId) }
                                } catch {
                                    refused.mutate { $0 += 1 }
                                }
                            }
                        }
                        try await sends.waitForAll()
                    }
                }
            }
            try await group.waitForAll()
        }
        } catch {
            _ = await finish()
            throw error
        }
        let byRoom = confirmed.value.map { $0.sorted() }
        expected.value = byRoom.map(Set.init)
        var shown: [[Int64]] = []
        var texts: [[String]] = []
        var latencies: [Double] = []
        for collector in collectors {
            let (seen, words, delays) = await collector.value
            shown.append(seen)
            texts.append(words)
            latencies += delays
        }
        let counts = await proxy.currentCounts()
        let peak = await finish()
        return Outcome(
            confirmed: byRoom, shown: shown, texts: texts, latencies: latencies.sorted(), edgeRSS: (rssBefore, peak.rss),
            peakBacklog: peak.backlog, proxy: (counts.forwarded, counts.dropped, counts.duplicated, counts.corrupted),
            sent: total * scenario.rooms, refused: refused.value)
    }

    /// Nearly every message confirmed (a send fails only when its request,
    /// every repetition of it, or every copy of its reply is lost for 30 s:
    /// at 30 % loss, never in practice); every member shown
    /// every confirmed message of its room, once, in commit order. The
    /// client shows a message once by its `message_id`, as the web client
    /// does, so "once" is checked where it can fail: no text shown twice
    /// (a request sent again is carried out once, not stored twice).
    static func check(_ outcome: Outcome, rooms: Int, _ label: String) {
        let confirmed = outcome.confirmed.reduce(0) { $0 + $1.count }
        #expect(confirmed * 100 >= outcome.sent * 99, "\(label): only \(confirmed) of \(outcome.sent) messages confirmed")
        for (index, texts) in outcome.texts.enumerated() {
            #expect(Set(texts).count == texts.count, "\(label): member \(index) was shown a message stored twice")
        }
        for (index, shown) in outcome.shown.enumerated() {
            let expected = outcome.confirmed[index % rooms]
            let missing = Set(expected).subtracting(shown)
            #expect(missing.isEmpty, "\(label): member \(index) was never shown \(missing.count) of \(expected.count) messages")
            #expect(shown == shown.sorted(), "\(label): member \(index) was shown messages out of commit order")
        }
    }

    static func report(_ outcome: Outcome, _ label: String) {
        func quantile(_ q: Double) -> String {
            guard !outcome.latencies.isEmpty else { return "-" }
            return String(format: "%.1f", outcome.latencies[min(outcome.latencies.count - 1, Int(Double(outcome.latencies.count - 1) * q))])
        }
        let confirmed = outcome.confirmed.reduce(0) { $0 + $1.count }
        print(
            "\(label): \(confirmed) of \(outcome.sent) messages confirmed (\(outcome.refused) sends failed), \(outcome.latencies.count) deliveries shown;"
                + " fan-out p50 \(quantile(0.5)) ms, p99 \(quantile(0.99)) ms, max \(quantile(1)) ms;"
                + " a member at most \(outcome.peakBacklog) messages behind;"
                + " edge RSS \(outcome.edgeRSS.before / 1_048_576) MB, at most \(outcome.edgeRSS.peak / 1_048_576) MB;"
                + " path: \(outcome.proxy.forwarded) forwarded, \(outcome.proxy.dropped) dropped, \(outcome.proxy.duplicated) duplicated")
    }

    /// Runs `scenario` on a fresh system (every client exempt from rate
    /// limits: the load is the scenario's), reports it under `label` and
    /// checks that nothing confirmed was lost or shown out of order.
    static func runChecked(_ scenario: Scenario, _ label: String) async throws -> Outcome {
        var result: Outcome?
        try await withSystem(settings: ["RATE_LIMIT_EXEMPT": "127.0.0.1"]) { system in
            let outcome = try await Self.run(scenario, system)
            Self.report(outcome, label)
            Self.check(outcome, rooms: scenario.rooms, label)
            result = outcome
        }
        return try #require(result)
    }

    @Test func tenPercentLossTwentyClientsTwoRoomsTwentyMessagesASecond() async throws {
        let scenario = Scenario(impairments: Impairments(drop: 0.1), perRoomRate: 10, seconds: Self.long ? 60 : 8)
        _ = try await Self.runChecked(scenario, "10% loss, 20 clients, 2 rooms, 20 messages/s")
    }

    @Test func thirtyPercentLossTwoMessagesASecondPerRoom() async throws {
        let scenario = Scenario(impairments: Impairments(drop: 0.3), perRoomRate: 2, seconds: Self.long ? 60 : 10)
        _ = try await Self.runChecked(scenario, "30% loss, 20 clients, 2 rooms, 2 messages/s per room")
    }

    /// The hard case: a third of all datagrams lost both ways, with
    /// duplication and reordering, at 10 messages/s per room. Measured and
    /// printed; asserted: nothing confirmed is lost, order holds, and the
    /// edge's memory stays bounded.
    @Test func thirtyPercentLossTenMessagesASecondPerRoom() async throws {
        let scenario = Scenario(
            impairments: Impairments(drop: 0.3, duplicate: 0.05, reorder: 0.1), perRoomRate: 10, seconds: Self.long ? 60 : 10,
            drain: .seconds(120))
        let outcome = try await Self.runChecked(
            scenario, "30% loss, 5% duplication, 10% reordering, 20 clients, 2 rooms, 10 messages/s per room")
        // Bounded: the edge holds cursors and the copies on their way, not a
        // queue of copies per member.
        #expect(outcome.edgeRSS.peak < outcome.edgeRSS.before + 64 << 20, "the edge's memory stays bounded")
    }
}
