import ChatClient
import ChatWire
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Programs killed with SIGKILL and restarted under traffic: sessions
/// continue, nothing acknowledged is lost, and no program exits because a
/// peer went away.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProcessFaultTests {
    /// Messages sent by several clients until stopped; remembers the ones
    /// acknowledged with MESSAGE_SENT and the errors seen.
    final class Traffic: Sendable {
        let acknowledged = MutexBox<[String]>([])
        let errors = MutexBox<[String]>([])
        /// The texts of the messages that got an error.
        let failed = MutexBox<[String]>([])
        let stop = MutexBox(false)
        private let tasks = MutexBox<[Task<Void, Never>]>([])

        func start(_ clients: [ChatClient], room: String, pause: Duration = .milliseconds(20)) {
            for (index, client) in clients.enumerated() {
                let task = Task {
                    var n = 0
                    while !self.stop.value {
                        let text = "client \(index) message \(n)"
                        n += 1
                        do {
                            _ = try await client.sendMessage(roomId: room, content: text)
                            self.acknowledged.mutate { $0.append(text) }
                        } catch {
                            self.errors.mutate { $0.append("\(error)") }
                            // Told it failed (not a client timeout, whose outcome is unknown).
                            if (error as? ChatError)?.code == .requestRefused { self.failed.mutate { $0.append(text) } }
                        }
                        try? await Task.sleep(for: pause)
                    }
                }
                tasks.mutate { $0.append(task) }
            }
        }

        /// Waits until more than `count` messages are acknowledged; false if
        /// that has not happened within `limit`.
        func waitForAcknowledged(moreThan count: Int, within limit: Duration = .seconds(15)) async -> Bool {
            let deadline = ContinuousClock.now + limit
            while acknowledged.value.count <= count {
                if ContinuousClock.now >= deadline { return false }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return true
        }

        /// Waits until `more` messages beyond those acknowledged so far are
        /// acknowledged; false if that has not happened within `limit`.
        func waitForProgress(_ more: Int = 5, within limit: Duration = .seconds(15)) async -> Bool {
            await waitForAcknowledged(moreThan: acknowledged.value.count + more - 1, within: limit)
        }

        func finish() async {
            stop.value = true
            for task in tasks.value { await task.value }
        }
    }

    /// Every acknowledged message in the room's stored history.
    static func storedContents(_ client: ChatClient, room: String) async throws -> Set<String> {
        Set(try await client.history(roomId: room).map(\.content))
    }

    static func scene(_ system: TestSystem, clients count: Int) async throws -> ([ChatClient], RoomRef) {
        var clients: [ChatClient] = []
        for i in 0..<count {
            let client = try await ChatClient(
                options: .init(
                    host: "127.0.0.1", port: system.port, knownHosts: nil, timeout: .seconds(8), retryInterval: .milliseconds(500)))
            try await client.connect()
            _ = try await client.login(email: "sender\(i)@example.com")
            clients.append(client)
        }
        let room = try await clients[0].createRoom(name: "Busy")
        for client in clients.dropFirst() { _ = try await client.joinRoom(id: room.roomId) }
        return (clients, room)
    }

    /// The store is killed mid-burst and is back in about a second (a few
    /// on a loaded machine): what was acknowledged is stored, and what a
    /// sender was told failed is not (the edge asks the store three times,
    /// 2 s each, before it says so).
    @Test(arguments: SystemDatabase.available) func killingTheStoreMidBurstLosesNoAcknowledgedMessage(_ database: SystemDatabase) async throws {
        try await withSystem(settings: ["RPC_TIMEOUT_MS": "2000"], database: database) { system in
            let (clients, room) = try await Self.scene(system, clients: 2)
            let traffic = Traffic()
            traffic.start(clients, room: room.roomId)
            #expect(await traffic.waitForProgress(), "traffic flows before the store dies")
            // The store dies mid-burst and stays down for a second.
            try await system.restartStore(signal: SIGKILL, after: .seconds(1))
            #expect(await traffic.waitForProgress(), "traffic flows again once the store is back")
            await traffic.finish()
            let acknowledged = traffic.acknowledged.value
            // A write the store did not answer is asked again (the store runs it
            // once), so most see no error at all; any that did got the protocol's.
            #expect(
                traffic.errors.value.allSatisfy { $0.contains("Packet processing failure: the store") || $0.contains("no answer from the server") },
                "\(traffic.errors.value)")
            let stored = try await Self.storedContents(clients[1], room: room.roomId)
            let lost = acknowledged.filter { !stored.contains($0) }
            #expect(lost.isEmpty, "acknowledged but not stored: \(lost)")
            // And what the sender was told failed is not in the history either.
            let failedButStored = traffic.failed.value.filter { stored.contains($0) }
            #expect(failedButStored.isEmpty, "answered with an error but stored: \(failedButStored)")
            #expect(system.edge.isRunning && system.keys.isRunning)
            for client in clients { await client.close() }
        }
    }

    @Test func killingTheEdgeUnderTrafficKeepsSessionsAndAcknowledgedMessages() async throws {
        try await withSystem { system in
            let (clients, room) = try await Self.scene(system, clients: 2)
            let traffic = Traffic()
            traffic.start(clients, room: room.roomId)
            #expect(await traffic.waitForProgress(), "traffic flows before the edge dies")
            try await system.restartEdge(signal: SIGKILL)
            #expect(await traffic.waitForProgress(), "the same sessions send again once the edge is back")
            await traffic.finish()
            // The same sessions go on after the restart.
            for client in clients { #expect(try await client.hello() == "Welcome to UDPChat-AI.") }
            let acknowledged = traffic.acknowledged.value
            let stored = try await Self.storedContents(clients[0], room: room.roomId)
            #expect(acknowledged.filter { !stored.contains($0) }.isEmpty)
            #expect(system.store.isRunning && system.keys.isRunning)
            for client in clients { await client.close() }
        }
    }

    /// Waits (at most 10 s) until every thread of `pid` is stopped (state
    /// T in /proc/PID/task/*/stat); whether they all are.
    static func waitUntilStopped(_ pid: pid_t) async throws -> Bool {
        let tasks = "/proc/\(pid)/task"
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let threads = (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []
            let states = threads.compactMap { thread -> Character? in
                guard let stat = try? String(contentsOfFile: "\(tasks)/\(thread)/stat", encoding: .utf8),
                    let close = stat.lastIndex(of: ")")
                else { return nil }
                // "PID (NAME) STATE ...": the state follows the name.
                return stat[stat.index(after: close)...].first { $0 != " " }
            }
            if !states.isEmpty, states.count == threads.count, states.allSatisfy({ $0 == "T" }) { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    /// A message the store could not take in time (it is frozen) is
    /// answered with an error, and it is not stored later when the store
    /// wakes up: the store drops a write whose caller gave up on it.
    @Test(arguments: SystemDatabase.available) func aMessageThatGotAnErrorIsNotStoredLater(_ database: SystemDatabase) async throws {
        try await withSystem(settings: ["RPC_TIMEOUT_MS": "500"], database: database) { system in
            let alice = try await system.client()
            _ = try await alice.login(email: "alice@example.com")
            let room = try await alice.createRoom(name: "Frozen")
            kill(system.store.pid, SIGSTOP)
            // kill() returns before every thread has stopped: wait until
            // they have, so that the store cannot take the message first.
            #expect(try await Self.waitUntilStopped(system.store.pid), "the store stopped")
            var failure = ""
            do {
                _ = try await alice.sendMessage(roomId: room.roomId, content: "told it failed")
            } catch {
                failure = "\(error)"
            }
            kill(system.store.pid, SIGCONT)
            #expect(failure.contains("the store did not answer in time"), "\(failure)")
            // Requests are taken in order: once this one is answered, the first was handled.
            _ = try await alice.sendMessage(roomId: room.roomId, content: "after the thaw")
            let stored = try await system.storedMessages()
            #expect(stored == ["after the thaw"], "stored: \(stored)\n\(system.logs())")
            #expect(try await alice.history(roomId: room.roomId).map(\.content) == ["after the thaw"])
            await alice.close()
        }
    }

    @Test func withTheKeyServiceDownHandshakesFailClearlyAndSessionsContinue() async throws {
        try await withSystem(settings: ["RPC_TIMEOUT_MS": "1000"]) { system in
            let (clients, room) = try await Self.scene(system, clients: 2)
            await system.keys.stop(signal: SIGKILL)
            // Established sessions need no key service.
            let traffic = Traffic()
            traffic.start(clients, room: room.roomId)
            // A new handshake fails with a clear error: the edge's own answer
            // at its RPC deadline (1 s), not the client's timeout (4 s), which
            // would throw a timeout instead. No wall time is asserted: on a
            // busy machine it measures the machine.
            let newcomer = try await ChatClient(
                options: .init(host: "127.0.0.1", port: system.port, knownHosts: nil, timeout: .seconds(4), retryInterval: nil))
            await #expect(throws: ChatClientError.serverError("Packet processing failure: the key service is unavailable; try again")) {
                try await newcomer.connect()
            }
            try await system.restartKeys()
            #expect(await traffic.waitForProgress(), "established sessions keep sending")
            await traffic.finish()
            #expect(traffic.errors.value.isEmpty, "\(traffic.errors.value)")
            // And once it is back, handshakes work again: the error says "try
            // again", and a retry succeeds once the edge has reconnected (its
            // reconnect interval backs off to at most 2 s).
            let back = ContinuousClock.now
            var later: ChatClient?
            var failures: [String] = []
            while later == nil && ContinuousClock.now - back < .seconds(10) {
                do {
                    later = try await system.client()
                } catch let error as ChatError where error.code == .serverError {
                    failures.append(error.message)
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            print("handshakes work again \(ContinuousClock.now - back) after the key service is back; \(failures.count) refused before")
            #expect(failures.allSatisfy { $0 == "server error: Packet processing failure: the key service is unavailable; try again" }, "\(failures)")
            let client = try #require(later)
            #expect(try await client.hello() == "Welcome to UDPChat-AI.")
            #expect(system.edge.isRunning && system.store.isRunning)
            for client in clients + [newcomer, client] { await client.close() }
        }
    }

    /// The edge sends keys a few requests of handshakes at once; those that
    /// come meanwhile wait for one to be answered. With keys gone they fail
    /// with the first that fails, at its deadline (2 s), not one deadline
    /// later (4 s): past the clients' patience (3 s from their start; the
    /// tenth starts 0.9 s after the first) they would hear nothing but a
    /// timeout.
    @Test func withTheKeyServiceDownHandshakesWaitingForOthersFailWithThem() async throws {
        try await withSystem(settings: ["RPC_TIMEOUT_MS": "2000", "HANDSHAKES_PER_SOURCE": "100"]) { system in
            await system.keys.stop(signal: SIGKILL)
            let expected = ChatClientError.serverError("Packet processing failure: the key service is unavailable; try again")
            let outcomes = await withTaskGroup(of: String.self) { group in
                // Twelve, 100 ms apart: each its own turn of the edge, so all but
                // the first four wait (their pacing, not what the test waits on).
                for n in 0..<12 {
                    try? await Task.sleep(for: .milliseconds(100))
                    group.addTask {
                        let client: ChatClient
                        do {
                            client = try await ChatClient(
                                options: .init(host: "127.0.0.1", port: system.port, knownHosts: nil, timeout: .seconds(3), retryInterval: nil))
                        } catch { return "client \(n) could not start: \(error)" }
                        let outcome: String
                        do {
                            try await client.connect()
                            outcome = "client \(n) connected"
                        } catch let error as ChatError where error == expected {
                            outcome = "ok"
                        } catch { outcome = "client \(n): \(error)" }
                        await client.close()
                        return outcome
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.count == 12 && outcomes.allSatisfy { $0 == "ok" }, "\(outcomes.filter { $0 != "ok" })")
        }
    }

    @Test(arguments: SystemDatabase.available) func anAIWorkerKilledAndRestartedFinishesTheQueuedJobs(_ database: SystemDatabase) async throws {
        try await withSystem(settings: ["AI_HEARTBEAT_MS": "200", "AI_LEASE_MS": "2000"], database: database) { system in
            let provider = try await system.startProvider("hold", reply: "after the restart", delay: 1)
            let worker = try await system.startWorker(["AI_MODE": "gpt", "OPENAI_BASE_URL": provider.baseURL + "/v1"])
            let (clients, room) = try await Self.scene(system, clients: 1)
            let client = clients[0]
            try client.askAI(roomId: room.roomId, draft: "improve me")
            // The worker has the job once its model was asked.
            #expect(await waitUntil(within: .seconds(10)) { !provider.requests().isEmpty })
            await worker.stop(signal: SIGKILL)
            // Chat goes on without a worker.
            _ = try await client.sendMessage(roomId: room.roomId, content: "meanwhile")
            try await system.startWorker(["AI_MODE": "gpt", "OPENAI_BASE_URL": provider.baseURL + "/v1"], name: "ai-again")
            let reply = try await client.expectEvent(timeout: .seconds(15)) {
                if case .message(let event) = $0.packet { return event.content == "after the restart" } else { return false }
            }
            #expect(reply.msgId != nil)
            // Once no job is open, no second reply can be stored.
            #expect(try await waitUntil { try await system.queryDatabase("SELECT count(*) FROM ai_jobs WHERE state = 'queued'") == "0" })
            #expect(try await client.history(roomId: room.roomId).map(\.content) == ["meanwhile", "after the restart"])
            #expect(system.store.isRunning && system.edge.isRunning)
            await client.close()
        }
    }
}
