import ArgumentParser
import ChatWire
import CryptoExtras
import Foundation
import NIOCore
import NIOPosix

/// `udpchat bench`: the project's load generator. It speaks the protocol
/// like the web client (acknowledging every broadcast copy), so it can
/// drive any server that speaks it, the original Python one included, and
/// reports throughput, fan-out latency, losses, and the CPU time and memory
/// of the server programs it can see in /proc.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load generator: fan-out, handshakes and idle sessions, against any server that speaks the protocol.",
        discussion: """
            Run it on the server's machine to see the servers' CPU time and memory (found in /proc by \
            name, or named with --pid). Many clients come from one address: start a udpchat edge with \
            RATE_LIMIT_EXEMPT=127.0.0.1 (and MESSAGES_PER_USER high enough for the rate asked), or its \
            per-source limits will slow the handshakes and logins down.
            """,
        subcommands: [Fanout.self, Handshakes.self, Idle.self])
}

/// What every bench mode shares.
struct BenchOptions: ParsableArguments {
    @Option(help: "Server address as HOST:PORT.")
    var server = "127.0.0.1:\(WireSpec.defaultPort)"
    @Option(help: "Event loops for the clients (default: one per core).")
    var workers = System.coreCount
    @Option(help: "Comma-separated program names to measure in /proc.")
    var watch = "udpchat-edge,udpchat-store,udpchat-keys"
    @Option(name: .customLong("pid"), help: "NAME=PID of another program to measure (repeatable), e.g. original=1234.")
    var pids: [String] = []
    @Option(help: "A label for this run in the report (e.g. udpchat or original).")
    var label = ""
    @Option(help: "Seconds a request may wait for its answer.")
    var timeout = 10.0
    @Option(help: "RSA size of the clients' key (one key is shared by every client).")
    var keyBits = 2048
    @Option(help: "Seconds before an unanswered request is sent again as the same datagram (0: never, as the web client).")
    var retryInterval = 1.0

    func address() throws -> SocketAddress {
        guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]) else {
            throw ValidationError("--server \(server): expected HOST:PORT")
        }
        var host = String(server[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return try SocketAddress.makeAddressResolvingHost(host, port: port)
    }

    /// The programs to measure.
    func processes() throws -> [(name: String, pid: Int32)] {
        var found = ProcessUsage.find(watch.split(separator: ",").map(String.init))
        for entry in pids {
            guard let equals = entry.firstIndex(of: "="), let pid = Int32(entry[entry.index(after: equals)...]) else {
                throw ValidationError("--pid \(entry): expected NAME=PID")
            }
            found.append((String(entry[..<equals]), pid))
        }
        return found
    }
}

/// The clients of a run, spread over the event loops.
final class BenchClients: Sendable {
    let group: MultiThreadedEventLoopGroup
    let workers: [BenchWorker]
    let count: Int

    /// `count` clients, `perSocket` of them sharing each UDP socket.
    init(_ options: BenchOptions, clients count: Int, perSocket: Int) async throws {
        let server = try options.address()
        let workerCount = max(1, options.workers)
        group = MultiThreadedEventLoopGroup(numberOfThreads: workerCount)
        let key: _RSA.Encryption.PrivateKey
        switch options.keyBits {
        case 1024: key = try _RSA.Encryption.PrivateKey(unsafeKeySize: _RSA.Signing.KeySize(bitCount: 1024))
        case 2048: key = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
        default: throw ValidationError("--key-bits must be 1024 or 2048")
        }
        let timeout = TimeAmount.milliseconds(Int64(options.timeout * 1000))
        let retry = options.retryInterval > 0 ? TimeAmount.milliseconds(Int64(options.retryInterval * 1000)) : nil
        var workers: [BenchWorker] = []
        for _ in 0..<workerCount {
            workers.append(BenchWorker(
                    loop: group.next(), server: server, key: key, requestTimeout: timeout, retryInterval: retry, perSocket: perSocket))
        }
        let sockets = (count + perSocket - 1) / perSocket
        let bindHost = server.protocol == .inet6 ? "::1" : "127.0.0.1"
        for (index, worker) in workers.enumerated() {
            let mine = sockets / workerCount + (index < sockets % workerCount ? 1 : 0)
            try await worker.open(sockets: max(1, mine), bindHost: server.ipAddress?.hasPrefix("127.") == true || server.protocol == .inet6 ? bindHost : "0.0.0.0")
        }
        self.workers = workers
        self.count = count
    }

    func worker(_ index: Int) -> BenchWorker { workers[index % workers.count] }

    /// Runs `body` for every client, at most `concurrency` at once; returns the errors.
    func forEach(concurrency: Int = 64, _ body: @escaping @Sendable (Int) async throws -> Void) async -> [String] {
        await withTaskGroup(of: String?.self) { group in
            var next = 0
            var errors: [String] = []
            while next < min(concurrency, count) {
                let index = next
                group.addTask {
                    do { try await body(index) } catch { return "client \(index): \(error)" }
                    return nil
                }
                next += 1
            }
            while let result = await group.next() {
                if let result { errors.append(result) }
                if next < count {
                    let index = next
                    group.addTask {
                        do { try await body(index) } catch { return "client \(index): \(error)" }
                        return nil
                    }
                    next += 1
                }
            }
            return errors
        }
    }

    func close() async {
        for worker in workers { await worker.close() }
        try? await group.shutdownGracefully()
    }
}

/// Sets clients up: a session each, logged in, in one of `rooms` rooms
/// (client i in room i mod rooms; the first of each creates it).
func setUp(_ clients: BenchClients, rooms: Int, run: String, roomsPerSession: Int = 1) async throws -> [String: Int] {
    let rooms = min(rooms, clients.count)
    let connect = { @Sendable (index: Int) async throws in
        let worker = clients.worker(index)
        try await worker.handshake(index)
        let welcome = try await worker.request(index, .login(email: "bench-\(run)-\(index)@example.com", password: nil), expecting: ["WELCOME"])
        guard case .welcome = welcome else { throw BenchError("LOGIN answered \(welcome.typeName)") }
    }
    // The rooms' creators first, so that each new room's list goes to few sessions.
    for index in 0..<rooms { try await connect(index) }
    var roomIds: [Int: String] = [:]
    for room in 0..<rooms {
        let created = try await clients.worker(room).request(room, .createRoom(name: "bench-\(run)-\(room)"), expecting: ["ROOM_CREATED"])
        guard case .roomCreated(let ref) = created else { throw BenchError("CREATE_ROOM answered \(created.typeName): \(created)") }
        roomIds[room] = ref.roomId
    }
    let ids = roomIds
    let errors = await clients.forEach { index in
        if index >= rooms { try await connect(index) }
        // Its own room (a creator is in it already), then the next ones round the list.
        for offset in 0..<min(roomsPerSession, rooms) where index >= rooms || offset > 0 {
            let room = ids[(index + offset) % rooms]!
            let joined = try await clients.worker(index).request(index, .joinRoom(roomId: room), expecting: ["JOINED_ROOM"])
            guard case .joinedRoom = joined else { throw BenchError("JOIN_ROOM answered \(joined.typeName)") }
        }
    }
    guard errors.isEmpty else { throw BenchError("joining rooms failed (\(errors.count)): \(errors.prefix(3).joined(separator: "; "))") }
    var members: [String: Int] = [:]
    for index in 0..<clients.count { members[ids[index % rooms]!, default: 0] += 1 }
    for index in 0..<clients.count {
        let room = ids[index % rooms]!
        try await clients.worker(index).setRoom(index, roomId: room, userId: "", members: members[room]!)
    }
    return members
}

// MARK: - Modes

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
        for worker in bench.workers { try await worker.startTraffic(
                size: size, interval: interval, messageTimeout: messageTimeout.map { .milliseconds(Int64($0 * 1000)) }, measureFrom: start) }
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

    func run() async throws {
        let processes = try options.processes()
        let bench = try await BenchClients(options, clients: concurrency, perSocket: 1)
        let before = processes.compactMap { ProcessUsage.read(pid: $0.pid, name: $0.name) }
        let deadline = ContinuousClock.now + .milliseconds(Int64(duration * 1000))
        let start = MonotonicClock.now()
        let latencies = MutexBox<[UInt32]>([])
        let failures = MutexBox<[String]>([])
        _ = await bench.forEach(concurrency: concurrency) { index in
            var attempt = 0
            while ContinuousClock.now < deadline {
                let began = MonotonicClock.now()
                do {
                    try await bench.worker(index).handshake(index * 1_000_000 + attempt)
                    let micros = UInt32(min(UInt64(UInt32.max), (MonotonicClock.now() - began) / 1000))
                    latencies.mutate { $0.append(micros) }
                } catch {
                    failures.mutate { $0.append("\(error)") }
                }
                attempt += 1
            }
        }
        let elapsed = Double(MonotonicClock.now() - start) / 1e9
        let after = processes.compactMap { ProcessUsage.read(pid: $0.pid, name: $0.name) }
        let sorted = latencies.value.sorted()
        let rows: [(String, String)] = [
            ("handshakes", "\(sorted.count) in \(format(elapsed)) s"),
            ("handshakes/s", format(Double(sorted.count) / elapsed)),
            ("latency p50 / p99 / max", "\(ms(sorted, 0.5)) / \(ms(sorted, 0.99)) / \(ms(sorted, 1.0)) ms"),
            ("failed", "\(failures.value.count)\(failures.value.first.map { " (first: \($0))" } ?? "")"),
        ]
        var json: JSONObject = [
            "bench": "handshakes", "label": .string(options.label), "server": .string(options.server),
            "concurrency": .int(Int64(concurrency)), "seconds": .double(elapsed), "handshakes": .int(Int64(sorted.count)),
            "handshakes_per_second": .double(Double(sorted.count) / elapsed), "failed": .int(Int64(failures.value.count)),
            "latency_ms": ["p50": .double(msValue(sorted, 0.5)), "p99": .double(msValue(sorted, 0.99)), "max": .double(msValue(sorted, 1.0))],
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
            ("sessions", "\(sessions) in \(rooms) rooms (\(roomsPerSession) each), set up in \(format(setup)) s, then silent for \(format(settle)) s")
        ]
        var servers: [JSONValue] = []
        for usage in after {
            guard let start = before.first(where: { $0.pid == usage.pid }) else { continue }
            let grown = usage.rssBytes - start.rssBytes
            rows.append(("\(usage.name) RSS", "\(mb(start.rssBytes)) -> \(mb(usage.rssBytes)) MB, \(grown / max(1, sessions)) bytes per session"))
            servers.append([
                "name": .string(usage.name), "rss_before_bytes": .int(Int64(start.rssBytes)), "rss_after_bytes": .int(Int64(usage.rssBytes)),
                "bytes_per_session": .int(Int64(grown / max(1, sessions))),
            ])
        }
        let json: JSONObject = [
            "bench": "idle", "label": .string(options.label), "server": .string(options.server), "sessions": .int(Int64(sessions)),
            "rooms": .int(Int64(rooms)), "rooms_per_session": .int(Int64(roomsPerSession)), "setup_seconds": .double(setup), "silent_seconds": .double(settle), "servers": .array(servers),
        ]
        printReport(title: "idle sessions", rows: rows, json: json)
        await bench.close()
    }
}

// MARK: - Reports

/// What a fan-out run measured.
struct FanoutReport {
    var results: [ClientResult]
    var members: [String: Int]
    var start: UInt64
    var stopped: UInt64
    var before: [ProcessUsage]
    var after: [ProcessUsage]

    func print(options: BenchOptions, clients: Int, rooms: Int, duration: Double, warmup: Double, rate: Double?, size: Int) {
        let sent = results.reduce(0) { $0 + $1.sent }
        let confirmed = results.reduce(0) { $0 + $1.confirmed.count }
        let refused = results.reduce(0) { $0 + $1.refused }
        // Unanswered: timed out, or still waiting when the run ended.
        let unanswered = sent - confirmed - refused
        let refusal = results.first { !$0.lastRefusal.isEmpty }?.lastRefusal ?? ""
        // Every message known to exist (confirmed to its sender, or seen by
        // anyone) should reach every member of its room.
        var known: [String: Set<Int64>] = [:]
        for result in results {
            known[result.roomId, default: []].formUnion(result.confirmed)
            known[result.roomId, default: []].formUnion(result.received)
        }
        var lost = 0
        var lostConfirmed = 0
        for result in results {
            let messages = known[result.roomId] ?? []
            lost += messages.subtracting(result.received).count
        }
        var confirmedByRoom: [String: Set<Int64>] = [:]
        for result in results { confirmedByRoom[result.roomId, default: []].formUnion(result.confirmed) }
        for result in results { lostConfirmed += (confirmedByRoom[result.roomId] ?? []).subtracting(result.received).count }
        let deliveries = results.reduce(0) { $0 + $1.deliveries }
        let duplicates = results.reduce(0) { $0 + $1.duplicates }
        let lastDelivery = results.map(\.lastDelivery).max() ?? stopped
        let runSeconds = Double(stopped - start) / 1e9
        let span = Double(max(stopped, lastDelivery) - start) / 1e9
        let drainSeconds = Double(max(stopped, lastDelivery) - stopped) / 1e9
        var latencies: [UInt32] = []
        latencies.reserveCapacity(deliveries)
        for result in results { latencies += result.latencies }
        latencies.sort()
        let rows: [(String, String)] = [
            (
                "clients, rooms", "\(clients) in \(rooms) rooms (\(members.values.sorted().map(String.init).joined(separator: "/")) members), \(size)-byte messages, "
                    + (rate.map { "\(format($0)) messages/s" } ?? "closed loop")
            ),
            (
                "messages",
                "\(sent) sent, \(confirmed) confirmed, \(refused) refused\(refusal.isEmpty ? "" : " (\(refusal))"), \(unanswered) unanswered"
                    + " in \(format(runSeconds)) s" + (warmup > 0 ? " (after \(format(warmup)) s of warm-up)" : "")
            ),
            ("messages/s", format(Double(confirmed) / runSeconds)),
            ("deliveries", "\(deliveries) in \(format(span)) s (\(format(drainSeconds)) s after the last send)"),
            ("deliveries/s", format(Double(deliveries) / span)),
            ("fan-out p50 / p99 / max", "\(ms(latencies, 0.5)) / \(ms(latencies, 0.99)) / \(ms(latencies, 1.0)) ms"),
            ("lost", "\(lost) deliveries (\(lostConfirmed) of confirmed messages)"),
            ("duplicates", "\(duplicates)"),
        ]
        var json: JSONObject = [
            "bench": "fanout", "label": .string(options.label), "server": .string(options.server), "clients": .int(Int64(clients)),
            "rooms": .int(Int64(rooms)), "size": .int(Int64(size)), "rate": rate.map { JSONValue.double($0) } ?? .null,
            "seconds": .double(runSeconds), "sent": .int(Int64(sent)), "confirmed": .int(Int64(confirmed)),
            "refused": .int(Int64(refused)), "unanswered": .int(Int64(unanswered)), "warmup_seconds": .double(warmup),
            "messages_per_second": .double(Double(confirmed) / runSeconds),
            "deliveries": .int(Int64(deliveries)), "deliveries_per_second": .double(Double(deliveries) / span),
            "drain_seconds": .double(drainSeconds),
            "fanout_ms": [
                "p50": .double(msValue(latencies, 0.5)), "p99": .double(msValue(latencies, 0.99)), "max": .double(msValue(latencies, 1.0)),
            ],
            "lost": .int(Int64(lost)), "lost_confirmed": .int(Int64(lostConfirmed)), "duplicates": .int(Int64(duplicates)),
        ]
        json.append("servers", serverUsage(before: before, after: after))
        printReport(title: "fan-out", rows: rows + usageRows(before: before, after: after), json: json)
    }
}

func usageRows(before: [ProcessUsage], after: [ProcessUsage]) -> [(String, String)] {
    after.compactMap { usage in
        guard let start = before.first(where: { $0.pid == usage.pid }) else { return nil }
        return ("\(usage.name) (pid \(usage.pid))", "\(format(usage.cpuSeconds - start.cpuSeconds)) CPU s, RSS \(mb(usage.rssBytes)) MB")
    }
}

func serverUsage(before: [ProcessUsage], after: [ProcessUsage]) -> JSONValue {
    .array(
        after.compactMap { usage in
            guard let start = before.first(where: { $0.pid == usage.pid }) else { return nil }
            return [
                "name": .string(usage.name), "pid": .int(Int64(usage.pid)), "cpu_seconds": .double(usage.cpuSeconds - start.cpuSeconds),
                "rss_bytes": .int(Int64(usage.rssBytes)),
            ]
        })
}

func printReport(title: String, rows: [(String, String)], json: JSONObject) {
    let width = rows.map(\.0.count).max() ?? 0
    var text = "\(title)\n"
    for (name, value) in rows { text += "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value + "\n" }
    text += String(decoding: JSONValue.object(json).serialized(), as: UTF8.self) + "\n"
    FileHandle.standardOutput.write(Data(text.utf8))
}

func msValue(_ sorted: [UInt32], _ quantile: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * quantile).rounded(.up)))
    return (Double(sorted[index]) / 1000 * 100).rounded() / 100
}

func ms(_ sorted: [UInt32], _ quantile: Double) -> String { sorted.isEmpty ? "-" : format(msValue(sorted, quantile)) }

func mb(_ bytes: Int) -> String { format(Double(bytes) / 1_048_576) }

func format(_ value: Double) -> String {
    if value >= 100 { return String(Int(value.rounded())) }
    return String((value * 100).rounded() / 100)
}
