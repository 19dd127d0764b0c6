import ArgumentParser
import ChatWire
import NIOCore

struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Clients in rooms send messages; every member receives and acknowledges each (the web client's way).",
        discussion: """
            Closed loop by default: each client sends its next message when MESSAGE_SENT arrives. --rate sends \
            that many messages per second in all, spread over the clients, without waiting.
            """)

    @OptionGroup var options: BenchOptions
    @Option(help: "Clients (each its own session and user).")
    var clients = 50
    @Option(help: "Rooms; client i joins room i mod rooms.")
    var rooms = 5
    @Option(help: "Seconds of sending that are measured.")
    var duration = 10.0
    @Option(help: "Seconds of sending before the measured part (not counted: the rate limit's burst, caches filling).")
    var warmup = 0.0
    @Option(help: "Messages per second in all (default: closed loop).")
    var rate: Double?
    @Option(help: "Bytes of text per message.")
    var size = 64
    @Option(help: "Most seconds to wait after sending for deliveries still on their way.")
    var drain = 30.0
    @Option(help: "Clients sharing one UDP socket.")
    var clientsPerSocket = 1
    @Option(help: "Seconds a sender waits for its message's confirmation before it sends the next (default: --timeout).")
    var messageTimeout: Double?

    func run() async throws {
        guard clients >= 1, rooms >= 1, rooms <= clients, duration > 0, size >= 32 else {
            throw ValidationError("need clients >= rooms >= 1, a positive duration and a size of at least 32")
        }
        let processes = try options.processes()
        let run = String(SecureRandom.identifier().prefix(8))
        let bench = try await BenchClients(options, clients: clients, perSocket: clientsPerSocket)
        let members = try await setUp(bench, rooms: rooms, run: run)
        let before = processes.compactMap { ProcessUsage.read(pid: $0.pid, name: $0.name) }
        let interval = rate.map { TimeAmount.nanoseconds(Int64(Double(clients) / $0 * 1e9)) }
        let start = MonotonicClock.now() + UInt64(warmup * 1e9)
        for worker in bench.workers {
            try await worker.startTraffic(
                size: size, interval: interval, messageTimeout: messageTimeout.map { .milliseconds(Int64($0 * 1000)) }, measureFrom: start)
        }
        try await Task.sleep(for: .milliseconds(Int64((warmup + duration) * 1000)))
        for worker in bench.workers { try await worker.stopTraffic() }
        let stopped = MonotonicClock.now()
        // Deliveries still on their way: wait while they keep coming.
        var last = -1
        var quietSince = ContinuousClock.now
        let drainDeadline = ContinuousClock.now + .milliseconds(Int64(drain * 1000))
        while ContinuousClock.now < drainDeadline {
            var count = 0
            for worker in bench.workers { count += try await worker.receivedCount() }
            if count != last {
                last = count
                quietSince = ContinuousClock.now
            } else if ContinuousClock.now - quietSince > .seconds(5) {
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let after = processes.compactMap { ProcessUsage.read(pid: $0.pid, name: $0.name) }
        var results: [ClientResult] = []
        for worker in bench.workers { results += try await worker.results() }
        let report = FanoutReport(
            results: results, members: members, start: start, stopped: stopped, before: before, after: after)
        report.print(options: options, clients: clients, rooms: rooms, duration: duration, warmup: warmup, rate: rate, size: size)
        await bench.close()
    }
}

struct Handshakes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Clients make new sessions (SESSION_INIT) back to back.")

    @OptionGroup var options: BenchOptions
    @Option(help: "Handshakes in progress at once.")
    var concurrency = 32
    @Option(help: "Seconds of handshaking.")
    var duration = 10.0

    func validate() throws {
        guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
        guard duration > 0 && duration <= 86_400 else { throw ValidationError("--duration must be more than 0 and at most 86400 seconds") }
    }

    func run() async throws {
        let processes = try options.processes()
        let bench = try await BenchClients(options, clients: concurrency, perSocket: 1)
        let before = processes.compactMap { ProcessUsage.read(pid: $0.pid, name: $0.name) }
        let start = MonotonicClock.now()
        let deadline = start + UInt64(duration * 1e9)
        // Each worker's share of the clients, back to back on its own loop.
        let workers = bench.workers
        let tally = try await withThrowingTaskGroup(of: HandshakeTally.self) { group in
            for (index, worker) in workers.enumerated() {
                let clients = concurrency / workers.count + (index < concurrency % workers.count ? 1 : 0)
                group.addTask { try await worker.handshakes(clients: clients, until: deadline) }
            }
            var all = HandshakeTally()
            for try await part in group {
                all.latencies += part.latencies
                all.failed += part.failed
                all.firstFailure = all.firstFailure ?? part.firstFailure
            }
            return all
        }
        let elapsed = Double(MonotonicClock.now() - start) / 1e9
        let after = processes.compactMap { ProcessUsage.read(pid: $0.pid, name: $0.name) }
        let sorted = tally.latencies.sorted()
        let rows: [(String, String)] = [
            ("handshakes", "\(sorted.count) in \(format(elapsed)) s"),
            ("handshakes/s", format(Double(sorted.count) / elapsed)),
            ("latency p50 / p99 / max", "\(ms(sorted, 0.5)) / \(ms(sorted, 0.99)) / \(ms(sorted, 1.0)) ms"),
            ("failed", "\(tally.failed)\(tally.firstFailure.map { " (first: \($0))" } ?? "")"),
        ]
        var json: JSONObject = [
            "bench": "handshakes", "label": .string(options.label), "server": .string(options.target),
            "concurrency": .int(Int64(concurrency)), "seconds": .double(elapsed), "handshakes": .int(Int64(sorted.count)),
            "handshakes_per_second": .double(Double(sorted.count) / elapsed), "failed": .int(Int64(tally.failed)),
            "latency_ms": [
                "p50": .double(msValue(sorted, 0.5)), "p99": .double(msValue(sorted, 0.99)), "max": .double(msValue(sorted, 1.0)),
            ],
        ]
        json.append("servers", serverUsage(before: before, after: after))
        printReport(title: "handshakes", rows: rows + usageRows(before: before, after: after), json: json)
        await bench.close()
    }
}

struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sessions that log in, join rooms and then say nothing: the memory each costs the servers.")

    @OptionGroup var options: BenchOptions
    @Option(help: "Sessions.")
    var sessions = 10_000
    @Option(help: "Rooms they are spread over.")
    var rooms = 50
    @Option(help: "Rooms each session joins (1: its own; --rooms: all of them).")
    var roomsPerSession = 1
    @Option(help: "Sessions sharing one UDP socket.")
    var sessionsPerSocket = 64
    @Option(help: "Seconds the sessions stay silent before the memory is read (past the edge's one-minute replay window).")
    var settle = 75.0

    func run() async throws {
        let processes = try options.processes()
        let run = String(SecureRandom.identifier().prefix(8))
        let before = processes.compactMap { ProcessUsage.read(pid: $0.pid, name: $0.name) }
        let bench = try await BenchClients(options, clients: sessions, perSocket: sessionsPerSocket)
        let start = MonotonicClock.now()
        _ = try await setUp(bench, rooms: rooms, run: run, roomsPerSession: roomsPerSession)
        let setup = Double(MonotonicClock.now() - start) / 1e9
        // Silence: the setup's broadcasts acknowledged, reports written, and
        // what a server keeps only for recently active sessions let go.
        try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
        let after = processes.compactMap { ProcessUsage.read(pid: $0.pid, name: $0.name) }
        var rows: [(String, String)] = [
            (
                "sessions",
                "\(sessions) in \(rooms) rooms (\(roomsPerSession) each), set up in \(format(setup)) s, then silent for \(format(settle)) s"
            )
        ]
        var servers: [JSONValue] = []
        for usage in after {
            guard let start = before.first(where: { $0.pid == usage.pid }) else { continue }
            let grown = usage.rssBytes - start.rssBytes
            rows.append(
                ("\(usage.name) RSS", "\(mb(start.rssBytes)) -> \(mb(usage.rssBytes)) MB, \(grown / max(1, sessions)) bytes per session"))
            servers.append([
                "name": .string(usage.name), "rss_before_bytes": .int(Int64(start.rssBytes)),
                "rss_after_bytes": .int(Int64(usage.rssBytes)),
                "bytes_per_session": .int(Int64(grown / max(1, sessions))),
            ])
        }
        let json: JSONObject = [
            "bench": "idle", "label": .string(options.label), "server": .string(options.target), "sessions": .int(Int64(sessions)),
            "rooms": .int(Int64(rooms)), "rooms_per_session": .int(Int64(roomsPerSession)), "setup_seconds": .double(setup),
            "silent_seconds": .double(settle), "servers": .array(servers),
        ]
        printReport(title: "idle sessions", rows: rows, json: json)
        await bench.close()
    }
}
