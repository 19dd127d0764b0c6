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
    @Option(help: "Go through udpchat-web: its WebSocket URL (ws://HOST:PORT/ws), one WebSocket per socket; --server is then unused.")
    var web: String?

    /// What the clients talk to: the bridge's URL, or the server.
    var target: String { web ?? server }

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
        let web = try options.web.map { try BenchWebSocket.Endpoint($0) }
        var workers: [BenchWorker] = []
        for _ in 0..<workerCount {
            workers.append(
                BenchWorker(
                    loop: group.next(), server: server, web: web, handshake: try BenchHandshake(key: key), requestTimeout: timeout,
                    retryInterval: retry, perSocket: perSocket))
        }
        let sockets = (count + perSocket - 1) / perSocket
        let bindHost = server.protocol == .inet6 ? "::1" : "127.0.0.1"
        for (index, worker) in workers.enumerated() {
            let mine = sockets / workerCount + (index < sockets % workerCount ? 1 : 0)
            try await worker.open(
                sockets: max(1, mine),
                bindHost: server.ipAddress?.hasPrefix("127.") == true || server.protocol == .inet6 ? bindHost : "0.0.0.0")
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
        let welcome = try await worker.request(
            index, .login(email: "bench-\(run)-\(index)@example.com", password: nil), expecting: ["WELCOME"])
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
