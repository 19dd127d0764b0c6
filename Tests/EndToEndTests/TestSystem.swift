import ChatClient
import ChatWire
import Foundation
import Logging
import Testing

/// The database a test system's store uses: SQLite always, PostgreSQL when
/// `UDPCHAT_TEST_POSTGRES` names a server to make a scratch database on
/// (`scripts/test.sh` starts one).
enum SystemDatabase: String, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    static var server: String? { ProcessInfo.processInfo.environment["UDPCHAT_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 } }
    static var available: [SystemDatabase] { server == nil ? [.sqlite] : [.sqlite, .postgres] }

    var testDescription: String { rawValue }

    /// Runs `sql` with psql on `url`; its output.
    static func psql(_ url: String, _ sql: String) async throws -> String {
        let (status, output) = try await runDetached(
            URL(fileURLWithPath: "/usr/bin/env"), ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        guard status == 0 else { throw HarnessError("psql failed: \(output)") }
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `url` with its database replaced by `name`.
    static func url(_ url: String, database name: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.path = "/" + name
        return components.string ?? url
    }
}

/// The real programs (keys, store, edge) started on loopback for one test,
/// with their data in a fresh temporary directory.
final class TestSystem: Sendable {
    let root: URL
    let binaries: URL
    let environment: [String: String]
    let database: SystemDatabase
    /// The scratch PostgreSQL database's URL, dropped at shutdown.
    let databaseURL: String?
    private let keysProcess: MutexBox<ProgramProcess>
    private let storeProcess: MutexBox<ProgramProcess>
    private let edgeProcess = MutexBox<ProgramProcess?>(nil)
    private let edgePort = MutexBox<Int>(0)
    let extraProcesses = MutexBox<[ProgramProcess]>([])

    /// Finds the built programs: `UDPCHAT_BIN_DIR`, else beside the test bundle.
    static func binaryDirectory() throws -> URL {
        if let dir = ProcessInfo.processInfo.environment["UDPCHAT_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        var candidate = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            if FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("udpchat-edge").path) { return candidate }
            candidate = candidate.deletingLastPathComponent()
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let debug = root.appendingPathComponent(".build/debug")
        guard FileManager.default.isExecutableFile(atPath: debug.appendingPathComponent("udpchat-edge").path) else {
            throw HarnessError("the programs are not built: run `swift build` first (or set UDPCHAT_BIN_DIR)")
        }
        return debug
    }

    /// The programs a test of latency runs: the optimised build the
    /// release ships when `UDPCHAT_TIMING_BIN_DIR` names it (scripts/test.sh
    /// does), else the same as every other test.
    static func timingBinaryDirectory() throws -> URL {
        if let dir = ProcessInfo.processInfo.environment["UDPCHAT_TIMING_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        return try binaryDirectory()
    }

    /// Starts keys, store and edge. `settings` are extra environment variables.
    init(settings: [String: String] = [:], database: SystemDatabase = .sqlite, programs: URL? = nil) async throws {
        binaries = try programs ?? Self.binaryDirectory()
        self.database = database
        // A short path: ipc:// socket paths must stay under 108 bytes.
        var template = Array("/tmp/uc-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError("mkdtemp failed") }
        root = URL(fileURLWithPath: String(cString: made))
        var environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "DATA_DIR": root.path, "SERVER_IP": "127.0.0.1", "SERVER_PORT": "0", "LOG_LEVEL": "info",
            "KEYS_METRICS_PORT": "0", "STORE_METRICS_PORT": "0", "EDGE_METRICS_PORT": "0", "AI_METRICS_PORT": "0",
            "RPC_TIMEOUT_MS": "3000",
        ]
        if database == .postgres {
            guard let server = SystemDatabase.server else { throw HarnessError("UDPCHAT_TEST_POSTGRES is unset") }
            let name = "udpchat_e2e_\(root.lastPathComponent.lowercased().filter { $0.isLetter || $0.isNumber })_\(UInt32.random(in: 0...UInt32.max))"
            _ = try await SystemDatabase.psql(server, "CREATE DATABASE \(name)")
            let url = SystemDatabase.url(server, database: name)
            databaseURL = url
            environment["DATABASE_URL"] = url
        } else {
            databaseURL = nil
        }
        environment.merge(settings) { $1 }
        self.environment = environment
        let generated = try await runDetached(
            binaries.appendingPathComponent("udpchat-keys"), ["generate"], environment: environment, directory: root)
        guard generated.status == 0 else { throw HarnessError("udpchat-keys generate failed: \(generated.output)") }
        keysProcess = MutexBox(
            try ProgramProcess(
                name: "keys", executable: binaries.appendingPathComponent("udpchat-keys"), environment: environment, directory: root))
        storeProcess = MutexBox(
            try ProgramProcess(
                name: "store", executable: binaries.appendingPathComponent("udpchat-store"), environment: environment, directory: root))
        do {
            _ = try await keys.waitForLine(startingWith: "udpchat-keys ready")
            _ = try await store.waitForLine(startingWith: "udpchat-store ready")
            try await startEdge(port: 0)
        } catch {
            await shutdown()
            throw error
        }
    }

    var edge: ProgramProcess { edgeProcess.value! }
    var keys: ProgramProcess { keysProcess.value }
    var store: ProgramProcess { storeProcess.value }

    /// The port of `key=HOST:PORT` (or `key=http://HOST:PORT`) in a ready line.
    static func port(in line: String, key: String) -> Int? {
        guard let field = line.split(separator: " ").first(where: { $0.hasPrefix(key + "=") }) else { return nil }
        return field.split(separator: ":").last.flatMap { Int($0) }
    }

    /// Stops the store with `signal`, waits `pause`, and starts it again.
    func restartStore(signal: Int32 = SIGKILL, after pause: Duration = .zero) async throws {
        try await restart(storeProcess, "store", signal: signal, after: pause)
    }

    /// Stops the key service with `signal`, waits `pause`, and starts it again.
    func restartKeys(signal: Int32 = SIGKILL, after pause: Duration = .zero) async throws {
        try await restart(keysProcess, "keys", signal: signal, after: pause)
    }

    /// Starts `udpchat-NAME` with this system's environment.
    private func launch(_ name: String) throws -> ProgramProcess {
        try ProgramProcess(
            name: name, executable: binaries.appendingPathComponent("udpchat-\(name)"), environment: environment, directory: root)
    }

    private func restart(_ box: MutexBox<ProgramProcess>, _ name: String, signal: Int32, after pause: Duration) async throws {
        await box.value.stop(signal: signal)
        try await Task.sleep(for: pause)
        let process = try launch(name)
        box.value = process
        _ = try await process.waitForLine(startingWith: "udpchat-\(name) ready")
    }

    var port: Int { edgePort.value }

    /// Starts the edge on `port` (0: a free one), with `extra` settings, and
    /// waits for its ready line.
    func startEdge(port: Int, extra: [String: String] = [:]) async throws {
        var environment = self.environment.merging(extra) { $1 }
        environment["SERVER_PORT"] = String(port)
        let edge = try ProgramProcess(
            name: "edge", executable: binaries.appendingPathComponent("udpchat-edge"), environment: environment, directory: root)
        edgeProcess.value = edge
        let line = try await edge.waitForLine(startingWith: "udpchat-edge ready")
        guard let bound = Self.port(in: line, key: "udp") else { throw HarnessError("no port in '\(line)'") }
        edgePort.value = bound
    }

    /// Starts another udpchat-store on this system's PostgreSQL database,
    /// with sockets of its own; returns it with its request and event endpoints.
    func startStore(_ name: String) async throws -> (process: ProgramProcess, store: String, events: String) {
        let store = "ipc://\(root.path)/run/\(name).sock"
        let events = "ipc://\(root.path)/run/\(name)-events.sock"
        var environment = self.environment
        environment["STORE_BIND"] = store
        environment["EVENTS_BIND"] = events
        environment["JOBS_BIND"] = "ipc://\(root.path)/run/\(name)-jobs.sock"
        let process = try ProgramProcess(
            name: name, executable: binaries.appendingPathComponent("udpchat-store"), environment: environment, directory: root)
        extraProcesses.value.append(process)
        _ = try await process.waitForLine(startingWith: "udpchat-store ready")
        return (process, store, events)
    }

    /// Stops the edge with `signal` and starts it again on the same port.
    func restartEdge(signal: Int32 = SIGKILL) async throws {
        let port = self.port
        await edge.stop(signal: signal)
        try await startEdge(port: port)
    }

    /// Starts another edge on a free port with `extra` settings; returns it and its port.
    func startEdge(named name: String, extra: [String: String]) async throws -> (process: ProgramProcess, port: Int) {
        var environment = self.environment.merging(extra) { $1 }
        environment["SERVER_PORT"] = "0"
        let edge = try ProgramProcess(
            name: name, executable: binaries.appendingPathComponent("udpchat-edge"), environment: environment, directory: root)
        extraProcesses.value.append(edge)
        let line = try await edge.waitForLine(startingWith: "udpchat-edge ready")
        guard let bound = Self.port(in: line, key: "udp") else { throw HarnessError("no port in '\(line)'") }
        return (edge, bound)
    }

    /// alice and bob (alice`tag`@example.com, bob`tag`@...) signed in, and
    /// a room alice made and bob joined.
    func aliceAndBob(in roomName: String, tag: String = "", record: Bool = false) async throws
        -> (alice: ChatClient, bob: ChatClient, alicesUser: UserInfo, room: RoomRef)
    {
        let alice = try await client(record: record)
        let bob = try await client(record: record)
        let alicesUser = try await alice.login(email: "alice\(tag)@example.com")
        _ = try await bob.login(email: "bob\(tag)@example.com")
        let room = try await alice.createRoom(name: roomName)
        _ = try await bob.joinRoom(id: room.roomId)
        return (alice, bob, alicesUser, room)
    }

    /// A client connected to the edge, or to `port` (pinning disabled unless `knownHosts` is given).
    func client(
        port: Int? = nil, acknowledge: Bool = true, record: Bool = false, keyBits: Int = 2048, knownHosts: KnownHosts? = nil
    ) async throws -> ChatClient {
        let client = try await ChatClient(
            options: .init(
                host: environment["SERVER_IP"] ?? "127.0.0.1", port: port ?? self.port, knownHosts: knownHosts, keyBits: keyBits,
                timeout: .seconds(5),
                acknowledge: acknowledge, recordDatagrams: record))
        try await client.connect()
        return client
    }

    /// Runs one of the programs to completion and returns its stdout.
    func run(_ program: String, _ arguments: [String], environment extra: [String: String] = [:], input: String? = nil) async throws
        -> (status: Int32, output: String)
    {
        try await runDetached(
            binaries.appendingPathComponent(program), arguments, environment: environment.merging(extra) { $1 }, directory: root,
            input: input)
    }

    /// Every chat message in a database file (default: this system's),
    /// read with Python's sqlite3 while the store runs (WAL allows it).
    func storedMessages(database: URL? = nil) async throws -> [String] {
        if database == nil, let databaseURL {
            let output = try await SystemDatabase.psql(databaseURL, "SELECT coalesce(json_agg(content ORDER BY id), '[]') FROM messages")
            guard case .array(let items)? = try? JSONParser.parse(output) else { throw HarnessError("reading messages failed: \(output)") }
            return items.compactMap(\.stringValue)
        }
        let path = database?.path ?? environment["DB_PATH"] ?? root.appendingPathComponent("udpchat.db").path
        let script = """
            import sqlite3, sys, json
            db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
            print(json.dumps([row[0] for row in db.execute("SELECT content FROM messages ORDER BY id")]))
            """
        let (status, output) = try await runDetached(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script, path])
        guard status == 0, case .array(let items)? = try? JSONParser.parse(output) else {
            throw HarnessError("reading \(path) failed: \(output)")
        }
        return items.compactMap(\.stringValue)
    }

    /// The first column of the first row `sql` selects from this system's
    /// database (read-only, while the store runs), as text; nil when no row.
    func queryDatabase(_ sql: String, _ arguments: [String] = []) async throws -> String? {
        if let databaseURL {
            // `?` placeholders filled with quoted literals (the tests' own values).
            var filled = ""
            var remaining = arguments[...]
            for character in sql {
                if character == "?", let value = remaining.popFirst() {
                    filled += "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
                } else {
                    filled.append(character)
                }
            }
            let output = try await SystemDatabase.psql(databaseURL, "SELECT json_build_array((\(filled))::text)")
            guard case .array(let row)? = try? JSONParser.parse(output.isEmpty ? "[null]" : output) else {
                throw HarnessError("querying failed: \(output)")
            }
            return row.first?.stringValue
        }
        let path = environment["DB_PATH"] ?? root.appendingPathComponent("udpchat.db").path
        let script = """
            import sqlite3, sys, json
            db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
            row = db.execute(sys.argv[2], sys.argv[3:]).fetchone()
            print(json.dumps(None if row is None else str(row[0])))
            """
        let (status, output) = try await runDetached(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script, path, sql] + arguments)
        guard status == 0, let value = try? JSONParser.parse(output) else { throw HarnessError("querying \(path) failed: \(output)") }
        return value.stringValue
    }

    /// Starts an AI worker with extra `settings` and waits until it is ready.
    @discardableResult
    func startWorker(_ settings: [String: String], arguments: [String] = [], name: String = "ai") async throws -> ProgramProcess {
        let worker = try ProgramProcess(
            name: name, executable: binaries.appendingPathComponent("udpchat-ai"), arguments: arguments,
            environment: environment.merging(settings) { $1 }, directory: root)
        extraProcesses.mutate { $0.append(worker) }
        _ = try await worker.waitForLine(startingWith: "udpchat-ai ready")
        return worker
    }

    /// Stops the AI workers started so far.
    func stopWorkers() async {
        for process in extraProcesses.value where process.name.hasPrefix("ai") { await process.stop() }
    }

    /// Starts a stand-in model API (Tests/Interop/mock_provider.py).
    func startProvider(_ scenario: String, reply: String = "Sounds good to me", delay: Double = 3, name: String = "provider") async throws
        -> MockProvider
    {
        let log = root.appendingPathComponent("\(name).jsonl")
        let process = try ProgramProcess(
            name: name, executable: URL(fileURLWithPath: "/usr/bin/env"),
            arguments: [
                "python3", MockProvider.script.path, "--scenario", scenario, "--reply", reply, "--delay", String(delay), "--log", log.path,
            ],
            environment: environment, directory: root)
        extraProcesses.mutate { $0.append(process) }
        let line = try await process.waitForLine(startingWith: "listening ")
        guard let port = Int(line.dropFirst("listening ".count)) else { throw HarnessError("no port in '\(line)'") }
        return MockProvider(process: process, port: port, log: log)
    }

    /// Stops everything this system started, by PID, and removes its files.
    func shutdown() async {
        for process in extraProcesses.value { await process.stop() }
        if let edge = edgeProcess.value { await edge.stop() }
        await store.stop()
        await keys.stop()
        if let databaseURL, let server = SystemDatabase.server, let name = URLComponents(string: databaseURL)?.path.dropFirst() {
            _ = try? await SystemDatabase.psql(server, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        }
        try? FileManager.default.removeItem(at: root)
    }

    /// The programs' stderr, for a failing test's report.
    func logs() -> String {
        ([keys, store] + [edgeProcess.value].compactMap { $0 } + extraProcesses.value)
            .map { "--- \($0.name)\n\($0.log())" }.joined(separator: "\n")
    }
}

/// Waits until `condition` holds, checking every 20 ms, at most `limit`;
/// returns whether it held. The way tests wait for an event they cannot
/// be told of directly, never a fixed sleep.
func waitUntil(within limit: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(20))
    }
}

extension TestSystem {
    /// One of the edge's metrics now (summed over its labels).
    func edgeMetric(_ name: String, _ labels: [String] = []) throws -> Double {
        try OpsProbe.metric(edge, ready: "udpchat-edge ready", name, labels)
    }
}

/// Runs `body` with a fresh system and always stops it, printing the logs when `body` throws.
func withSystem(
    settings: [String: String] = [:], database: SystemDatabase = .sqlite, programs: URL? = nil, _ body: (TestSystem) async throws -> Void
) async throws {
    let system = try await TestSystem(settings: settings, database: database, programs: programs)
    do {
        try await body(system)
    } catch {
        print(system.logs())
        await system.shutdown()
        throw error
    }
    await system.shutdown()
}

extension ChatClient {
    /// Asks for an AI reply in `roomId` and waits until `listener` sees the
    /// mock provider's ("Sounds good to me"); whether it came within 10 s.
    func askAIAndWait(roomId: String, listener: ChatClient) async throws -> Bool {
        try askAI(roomId: roomId, draft: "")
        return await listener.nextEvent(timeout: .seconds(10)) {
            if case .message(let event) = $0.packet { return event.content == "Sounds good to me" }
            return false
        } != nil
    }

    /// The next broadcast accepted by `match`; fails the test's wait after `timeout`.
    func expectEvent(
        timeout: Duration = .seconds(5), where match: @escaping @Sendable (ServerPacket.Received) -> Bool = { _ in true }
    ) async throws -> ServerPacket.Received {
        guard let received = await nextEvent(timeout: timeout, where: match) else {
            throw HarnessError("no matching broadcast within \(timeout)")
        }
        return received
    }
}
