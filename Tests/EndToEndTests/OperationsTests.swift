import ChatClient
import ChatWire
import Foundation
import NIOCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What operators rely on: each program's /metrics, /healthz and /readyz,
/// the systemd notification protocol, and a clean exit on SIGTERM under
/// traffic that loses nothing acknowledged.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct OperationsTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func metricsPort(_ process: ProgramProcess, ready: String) throws -> Int {
        let line = try #require(process.output.first { $0.hasPrefix(ready) })
        return try #require(TestSystem.port(in: line, key: "metrics"), "no metrics= in '\(line)'")
    }

    static func scrape(_ port: Int) throws -> (samples: [String: Double], families: Set<String>) {
        let reply = try OpsProbe.get(port: port, path: "/metrics")
        #expect(reply.status == 200)
        #expect(reply.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        return (OpsProbe.samples(reply.body), OpsProbe.families(reply.body))
    }

    /// The container image's health check script, run against a live port.
    static func healthcheck(_ port: Int) async throws -> Int32 {
        try await runDetached(
            URL(fileURLWithPath: "/bin/bash"), [repository.appendingPathComponent("deploy/container/healthcheck").path, String(port)]
        ).status
    }

    @Test func everyProgramServesMetricsAndHealthAndTheCountersMoveWithTraffic() async throws {
        try await withSystem(settings: AIJobTests.fast) { system in
            let provider = try await system.startProvider("ok", reply: "Sounds good to me")
            let worker = try await system.startWorker(["AI_MODE": "gpt", "OPENAI_BASE_URL": provider.baseURL + "/v1"])
            let ports = [
                "keys": try Self.metricsPort(system.keys, ready: "udpchat-keys ready"),
                "store": try Self.metricsPort(system.store, ready: "udpchat-store ready"),
                "edge": try Self.metricsPort(system.edge, ready: "udpchat-edge ready"),
                "ai": try Self.metricsPort(worker, ready: "udpchat-ai ready"),
            ]
            #expect(Set(ports.values).count == 4, "each program has its own port: \(ports)")
            for (name, port) in ports {
                let health = try OpsProbe.get(port: port, path: "/healthz")
                #expect(health.status == 200 && health.body == "ok\n", "\(name) /healthz")
                let ready = try await OpsProbe.wait(port: port, path: "/readyz", status: 200)
                #expect(!ready.body.contains("unreachable"), "\(name) /readyz: \(ready.body)")
                #expect(try OpsProbe.get(port: port, path: "/nothing").status == 404)
                #expect(try await Self.healthcheck(port) == 0, "the image's health check passes for \(name)")
            }
            let before = try ports.mapValues { try Self.scrape($0).samples }

            // Traffic: two people, a room, ten messages, one AI reply.
            let (alice, bob, _, room) = try await system.aliceAndBob(in: "Ops")
            for n in 0..<10 { _ = try await alice.sendMessage(roomId: room.roomId, content: "message \(n)") }
            #expect(try await alice.askAIAndWait(roomId: room.roomId, listener: bob), "the AI reply arrives")
            // bob's ACKs reach the edge: nothing it sent is waiting for one.
            #expect(try await waitUntil { try system.edgeMetric("udpchat_edge_unacknowledged_copies") == 0 })

            var after: [String: [String: Double]] = [:]
            var families = Set<String>()
            for (name, port) in ports {
                let scraped = try Self.scrape(port)
                after[name] = scraped.samples
                families.formUnion(scraped.families)
            }
            func grew(_ program: String, _ metric: String, _ labels: [String] = [], by least: Double) {
                let old = OpsProbe.total(before[program] ?? [:], metric, labels)
                let new = OpsProbe.total(after[program] ?? [:], metric, labels)
                #expect(new - old >= least, "\(program) \(metric)\(labels): \(old) → \(new), expected +\(least)")
            }
            grew("edge", "udpchat_edge_datagrams_received_total", by: 20)
            grew("edge", "udpchat_edge_datagrams_sent_total", by: 20)
            grew("edge", "udpchat_edge_handshakes_total", ["result=\"ok\""], by: 2)
            grew("edge", "udpchat_edge_ack_round_trip_seconds_count", by: 1)
            grew("edge", "udpchat_rpc_seconds_count", ["method=\"post_message\""], by: 10)
            grew("edge", "udpchat_rpc_seconds_count", ["method=\"new_session\""], by: 2)
            #expect(OpsProbe.total(after["edge"]!, "udpchat_edge_sessions") >= 2)
            grew("keys", "udpchat_keys_signatures_total", by: 2)
            grew("store", "udpchat_store_messages_stored_total", by: 11)
            grew("store", "udpchat_store_batch_size_count", by: 1)
            grew("store", "udpchat_store_request_seconds_count", ["method=\"post_message\""], by: 10)
            for state in ["queued", "leased", "completed"] {
                grew("store", "udpchat_store_ai_jobs_total", ["state=\"\(state)\""], by: 1)
            }
            grew("store", "udpchat_store_ai_job_seconds_count", ["outcome=\"completed\""], by: 1)
            #expect(OpsProbe.total(after["store"]!, "udpchat_store_ai_workers") == 1)
            grew("ai", "udpchat_ai_jobs_total", ["outcome=\"reply\""], by: 1)

            // Stopping the store: the edge and the worker say so on /readyz
            // (and the image's health check fails); back when it returns.
            await system.store.stop()
            let edgeDown = try await OpsProbe.wait(port: ports["edge"]!, path: "/readyz", status: 503)
            #expect(edgeDown.body.contains("udpchat-store unreachable"), "\(edgeDown.body)")
            #expect(edgeDown.body.contains("udpchat-keys ok"), "\(edgeDown.body)")
            let aiDown = try await OpsProbe.wait(port: ports["ai"]!, path: "/readyz", status: 503)
            #expect(aiDown.body.contains("udpchat-store unreachable"), "\(aiDown.body)")
            #expect(try OpsProbe.get(port: ports["edge"]!, path: "/healthz").status == 200, "alive while not ready")
            #expect(try await Self.healthcheck(ports["edge"]!) != 0)
            // A request while the store is down is an RPC error in the metrics.
            await #expect(throws: (any Error).self) { _ = try await alice.sendMessage(roomId: room.roomId, content: "into the void") }
            let errors = OpsProbe.samples(try OpsProbe.get(port: ports["edge"]!, path: "/metrics").body)
            #expect(OpsProbe.total(errors, "udpchat_rpc_errors_total", ["peer=\"udpchat-store\""]) >= 1)
            families.formUnion(OpsProbe.families(try OpsProbe.get(port: ports["edge"]!, path: "/metrics").body))

            try await system.restartStore(signal: SIGTERM)
            _ = try await OpsProbe.wait(port: ports["edge"]!, path: "/readyz", status: 200)
            _ = try await OpsProbe.wait(port: ports["ai"]!, path: "/readyz", status: 200)

            // Every metric the README's table and the Grafana dashboard name exists.
            let readme = try String(contentsOf: Self.repository.appendingPathComponent("README.md"), encoding: .utf8)
            let dashboard = try String(
                contentsOf: Self.repository.appendingPathComponent("deploy/grafana-dashboard.json"), encoding: .utf8)
            var named = Set<String>()
            for text in [readme, dashboard] {
                for match in text.matches(of: /udpchat_[a-z_]+/) {
                    var name = String(match.output)
                    for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
                    named.insert(name)
                }
            }
            // The README abbreviates one pair ("..._received_total`, `_sent_total").
            named.insert("udpchat_edge_datagrams_sent_total")
            named = named.filter { !$0.hasSuffix("_") }
            let missing = named.subtracting(families)
            #expect(missing.isEmpty, "named in README or dashboard but served by no program: \(missing.sorted())")
            await alice.close()
            await bob.close()
        }
    }

    /// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
    final class NotifySocket: @unchecked Sendable {
        let path: String
        let fd: Int32

        init(directory: URL) throws {
            path = directory.appendingPathComponent("notify").path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket: \(errno)") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0 else { throw HarnessError("bind \(path): \(errno)") }
            var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(fd) }

        /// The messages received until one contains `wanted`, or the deadline.
        func wait(for wanted: String, timeout: Duration = .seconds(20)) async throws -> [String] {
            var seen: [String] = []
            let deadline = ContinuousClock.now + timeout
            var buffer = [UInt8](repeating: 0, count: 4096)
            while ContinuousClock.now < deadline {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count > 0 {
                    let message = String(decoding: buffer[0..<count], as: UTF8.self)
                    seen.append(message)
                    if message.split(separator: "\n").contains(Substring(wanted)) { return seen }
                } else {
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            throw HarnessError("no \(wanted) within \(timeout); received \(seen)")
        }
    }

    @Test func programsTellSystemdWhenReadyFeedTheWatchdogAndSayWhenStopping() async throws {
        try await withSystem { system in
            // The edge again, as systemd would start it: NOTIFY_SOCKET and a 1 s watchdog.
            let port = system.port
            await system.edge.stop()
            let notify = try NotifySocket(directory: system.root)
            try await system.startEdge(port: port, extra: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
            let ready = try await notify.wait(for: "READY=1")
            #expect(system.edge.output.contains { $0.hasPrefix("udpchat-edge ready") }, "READY=1 comes once it serves: \(ready)")
            _ = try await notify.wait(for: "WATCHDOG=1", timeout: .seconds(3))
            _ = try await notify.wait(for: "WATCHDOG=1", timeout: .seconds(3))  // and again
            kill(system.edge.pid, SIGTERM)
            _ = try await notify.wait(for: "STOPPING=1")
            #expect(await system.edge.stop(timeout: .seconds(15)) == 0)

            // A WATCHDOG_PID naming another process means the watchdog is not ours.
            let other = try NotifySocket(directory: system.root.appendingPathComponent("run"))
            try await system.startEdge(port: port, extra: ["NOTIFY_SOCKET": other.path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"])
            let messages = try await other.wait(for: "READY=1")
            // An observation window, not a synchronisation: five of the
            // 100 ms ping intervals a watchdog of its own would have used.
            // A slow machine can only make a wrong edge pass, never a right one fail.
            try await Task.sleep(for: .milliseconds(500))
            var buffer = [UInt8](repeating: 0, count: 4096)
            var later: [String] = []
            while true {
                let count = recv(other.fd, &buffer, buffer.count, 0)
                guard count > 0 else { break }
                later.append(String(decoding: buffer[0..<count], as: UTF8.self))
            }
            #expect(!(messages + later).contains("WATCHDOG=1"), "\(messages + later)")
        }
    }

    @Test func sigtermUnderTrafficExitsZeroInTimeAndLosesNothingAcknowledged() async throws {
        try await withSystem(settings: AIJobTests.fast.merging(["RPC_TIMEOUT_MS": "1000"]) { $1 }) { system in
            let (clients, room) = try await ProcessFaultTests.scene(system, clients: 2)
            let traffic = ProcessFaultTests.Traffic()
            traffic.start(clients, room: room.roomId, pause: .milliseconds(10))
            var exits: [String: (status: Int32, seconds: Double)] = [:]
            func stopAndRestart(_ name: String, bound: Duration, restart: () async throws -> Void) async throws {
                #expect(await traffic.waitForProgress(20), "traffic flows before \(name) stops")
                let started = ContinuousClock.now
                let process = name == "edge" ? system.edge : name == "store" ? system.store : system.keys
                let status = await process.stop(signal: SIGTERM, timeout: bound)
                let elapsed = ContinuousClock.now - started
                exits[name] = (status, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                try await restart()
            }
            // Each program's bound is the unit's TimeoutStopSec (SIGKILL comes after it).
            try await stopAndRestart("edge", bound: .seconds(20)) { try await system.startEdge(port: system.port) }
            try await stopAndRestart("store", bound: .seconds(30)) { try await system.restartStore(signal: SIGTERM) }
            try await stopAndRestart("keys", bound: .seconds(20)) { try await system.restartKeys(signal: SIGTERM) }
            #expect(await traffic.waitForProgress(20), "traffic flows after the restarts")
            await traffic.finish()
            for (name, exit) in exits.sorted(by: { $0.key < $1.key }) {
                print("SIGTERM \(name): exit \(exit.status) after \(String(format: "%.2f", exit.seconds)) s")
                #expect(exit.status == 0, "\(name) exits 0 on SIGTERM")
            }
            let acknowledged = traffic.acknowledged.value
            let stored = Set(try await system.storedMessages())
            let lost = acknowledged.filter { !stored.contains($0) }
            print("SIGTERM under traffic: \(acknowledged.count) acknowledged, \(lost.count) lost, \(traffic.errors.value.count) errors")
            #expect(lost.isEmpty, "acknowledged but not stored: \(lost)")
            for client in clients { await client.close() }
        }
    }

    @Test func aStoppingEdgeWaitsForTheAcknowledgementOfWhatItSent() async throws {
        try await withSystem { system in
            // bob is 300 ms away each way, so his ACK comes 600 ms after a broadcast.
            let proxy = try await LossyProxy(
                upstream: try SocketAddress(ipAddress: "127.0.0.1", port: system.port), impairments: Impairments(delay: 300...300),
                seed: 7)
            defer { Task { await proxy.close() } }
            let alice = try await system.client()
            let bob = try await ChatClient(options: .init(host: "127.0.0.1", port: proxy.port, knownHosts: nil, timeout: .seconds(10)))
            try await bob.connect()
            _ = try await alice.login(email: "alice@example.com")
            _ = try await bob.login(email: "bob@example.com")
            let room = try await alice.createRoom(name: "Far")
            _ = try await bob.joinRoom(id: room.roomId)
            func arrives(_ text: String) async -> Bool {
                await bob.nextEvent(timeout: .seconds(5)) {
                    if case .message(let event) = $0.packet { return event.content == text }
                    return false
                } != nil
            }
            _ = try await alice.sendMessage(roomId: room.roomId, content: "first")
            #expect(await arrives("first"))
            // bob's ACK reached the edge (he is an acknowledging client now).
            #expect(try await waitUntil { try system.edgeMetric("udpchat_edge_unacknowledged_copies") == 0 })

            _ = try await alice.sendMessage(roomId: room.roomId, content: "last words")
            let started = ContinuousClock.now
            kill(system.edge.pid, SIGTERM)
            #expect(await arrives("last words"))
            #expect(await system.edge.stop(timeout: .seconds(20)) == 0)
            let took = ContinuousClock.now - started
            print("edge drained in \(took) with an ACK 600 ms away")
            #expect(
                system.edge.log().contains("drained: every request answered, every copy to an acknowledging client confirmed"),
                "\(system.edge.log())")
            await alice.close()
            await bob.close()
        }
    }

    @Test func aBackupTakenUnderTrafficHoldsWhatWasAcknowledgedAndRestores() async throws {
        try await withSystem { system in
            let (clients, room) = try await ProcessFaultTests.scene(system, clients: 2)
            let traffic = ProcessFaultTests.Traffic()
            traffic.start(clients, room: room.roomId, pause: .milliseconds(10))
            #expect(await traffic.waitForProgress(10), "traffic flows before the backup")
            let acknowledgedBefore = traffic.acknowledged.value
            let backup = system.root.appendingPathComponent("backup.db")
            let taken = try await system.run("udpchat-store", ["backup", backup.path])
            #expect(taken.status == 0, "\(taken.output)")
            #expect(await traffic.waitForProgress(10), "traffic flows after the backup")
            await traffic.finish()
            let inBackup = Set(try await system.storedMessages(database: backup))
            let live = Set(try await system.storedMessages())
            #expect(acknowledgedBefore.allSatisfy(inBackup.contains), "acknowledged before the backup began")
            #expect(inBackup.isSubset(of: live) && live.count > inBackup.count, "\(inBackup.count) in the backup, \(live.count) live")
            #expect(try await system.run("udpchat-store", ["backup", backup.path]).status != 0, "an existing backup is not overwritten")

            // Restore with the store stopped; the store then serves the backup's state.
            await system.store.stop()
            let restored = try await system.run("udpchat-store", ["restore", backup.path])
            #expect(restored.status == 0, "\(restored.output)")
            #expect(Set(try await system.storedMessages()) == inBackup)
            try await system.restartStore(signal: SIGTERM)
            let history = try await clients[1].history(roomId: room.roomId).map(\.content)
            #expect(!history.isEmpty && Set(history).isSubset(of: inBackup))
            for client in clients { await client.close() }
        }
    }

    @Test func aWorkerStoppedMidJobExitsZeroAndTheJobStillGetsItsReply() async throws {
        try await withSystem(settings: AIJobTests.fast) { system in
            // A model that takes 3 s: the first worker is stopped mid-reply.
            let slow = try await system.startProvider("hold", reply: "finished anyway", delay: 3, name: "slow")
            let first = try await system.startWorker(["AI_MODE": "gpt", "OPENAI_BASE_URL": slow.baseURL + "/v1"], name: "ai-first")
            let scene = try await AIJobTests.Room(system)
            try scene.alice.askAI(roomId: scene.room.roomId, draft: "")
            let deadline = ContinuousClock.now + .seconds(5)
            while slow.requests().isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(!slow.requests().isEmpty, "the first worker took the job")
            let started = ContinuousClock.now
            let status = await first.stop(signal: SIGTERM, timeout: .seconds(20))
            let took = ContinuousClock.now - started
            print("SIGTERM ai mid-job: exit \(status) after \(took)")
            #expect(status == 0)
            // It finished the running job before exiting (within its 10 s drain):
            // the reply arrives once, and no second worker was needed.
            let reply = await scene.aiMessage(scene.bob, timeout: .seconds(10))
            #expect(reply?.content == "finished anyway")
            #expect(await scene.aiMessage(scene.bob, timeout: .seconds(1)) == nil, "exactly one reply")
            await scene.close()
        }
    }
}
