import ChatClient
import ChatWire
import Foundation
import Testing

/// The command-line programs as a user runs them.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProgramTests {
    /// The fingerprint in `udpchat-keys show` output.
    static func fingerprint(_ output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix("fingerprint:") }?.split(separator: " ").last.map(String.init)
    }

    @Test func clientCommandsSendAndReadHistoryAndPinTheFingerprint() async throws {
        try await withSystem { system in
            let knownHosts = system.root.appendingPathComponent("known_hosts").path
            let server = "127.0.0.1:\(system.port)"
            let base = ["--server", server, "--known-hosts", knownHosts]
            let sent = try await system.run(
                "udpchat", ["send"] + base + ["--email", "alice@example.com", "--room", "Ops", "--create", "deploy", "done"])
            #expect(sent.status == 0, "\(sent.output)")
            #expect(sent.output.contains("sent message 1 to Ops"))
            let history = try await system.run("udpchat", ["history"] + base + ["--email", "bob@example.com", "--room", "Ops", "--json"])
            #expect(history.status == 0, "\(history.output)")
            let item = try #require(try JSONParser.parse(history.output.trimmingCharacters(in: .whitespacesAndNewlines)).objectValue)
            #expect(item["content"] == "deploy done" && item["name"] == "alice" && item["message_id"] == 1)
            // A member's escape sequences reach the terminal as text, not as commands.
            let hostile = try await system.run(
                "udpchat", ["send"] + base + ["--email", "alice@example.com", "--room", "Ops", "\u{1B}[2J\u{1B}[31mboo"])
            #expect(hostile.status == 0, "\(hostile.output)")
            let shown = try await system.run("udpchat", ["history"] + base + ["--email", "bob@example.com", "--room", "Ops"])
            #expect(shown.output.contains("alice: \u{FFFD}[2J\u{FFFD}[31mboo") && !shown.output.contains("\u{1B}"), "\(shown.output)")
            let pinned = try String(contentsOfFile: knownHosts, encoding: .utf8)
            let fingerprint = try #require(Self.fingerprint(try await system.run("udpchat-keys", ["show"]).output))
            #expect(pinned.contains("\(server) \(fingerprint)"))

            // A replaced server key is refused with a clear message.
            #expect(try await system.run("udpchat-keys", ["generate", "--force"]).status == 0)
            try await system.restartKeys(signal: SIGTERM)
            let refused = try await system.run("udpchat", ["hello"] + base)
            #expect(refused.status != 0)
            #expect(refused.output.contains("was pinned for it on first use"), "\(refused.output)")
        }
    }

    @Test func keysRefuseToOverwriteAndImportKeepsTheFingerprint() async throws {
        try await withSystem { system in
            let refused = try await system.run("udpchat-keys", ["generate"])
            #expect(refused.status == 1 && refused.output.contains("--force"))
            let original = try await system.run("udpchat-keys", ["show"]).output
            let other = system.root.appendingPathComponent("other-keys").path
            let imported = try await system.run(
                "udpchat-keys", ["import", system.root.appendingPathComponent("keys/server_private_key.pem").path, "--dir", other])
            #expect(imported.status == 0, "\(imported.output)")
            let fingerprint = try #require(Self.fingerprint(original))
            #expect(Self.fingerprint(try await system.run("udpchat-keys", ["show", "--dir", other]).output) == fingerprint)
            let attributes = try FileManager.default.attributesOfItem(atPath: other + "/server_private_key.pem")
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            #expect(try await system.run("udpchat-keys", ["generate", "--bits", "1000", "--dir", other + "2"]).status == 1)
        }
    }

    @Test func rotateKeepsTheOldKeyAndOpenSessionsGoOnWhilePinnedClientsRefuse() async throws {
        try await withSystem { system in
            let knownHosts = system.root.appendingPathComponent("known_hosts").path
            let base = ["--server", "127.0.0.1:\(system.port)", "--known-hosts", knownHosts]
            #expect(try await system.run("udpchat", ["hello"] + base).status == 0, "pins the first key")
            let open = try await system.client()
            _ = try await open.login(email: "alice@example.com")
            let room = try await open.createRoom(name: "Keys")
            let old = try #require(Self.fingerprint(try await system.run("udpchat-keys", ["show"]).output))

            let rotated = try await system.run("udpchat-keys", ["rotate"])
            #expect(rotated.status == 0, "\(rotated.output)")
            let new = try #require(Self.fingerprint(rotated.output))
            #expect(new != old && rotated.output.contains("retired:") && rotated.output.contains(old))
            let retiredDir = system.root.appendingPathComponent("keys/retired")
            let retired = try FileManager.default.contentsOfDirectory(atPath: retiredDir.path)
            #expect(retired.count == 1 && retired[0].hasPrefix("server_private_key-"))
            let attributes = try FileManager.default.attributesOfItem(atPath: retiredDir.appendingPathComponent(retired[0]).path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)

            try await system.restartKeys(signal: SIGTERM)
            #expect(system.keys.output.contains { $0.contains("fingerprint=\(new)") })
            // The open session goes on: its key is sealed with the unchanged key-encryption key.
            _ = try await open.sendMessage(roomId: room.roomId, content: "still here")
            try await system.restartEdge(signal: SIGTERM)
            _ = try await open.sendMessage(roomId: room.roomId, content: "after an edge restart too")
            // A client that pinned the old key refuses the new one.
            let refused = try await system.run("udpchat", ["hello"] + base)
            #expect(refused.status != 0 && refused.output.contains("was pinned for it on first use"), "\(refused.output)")

            // Going back: import the retired key.
            let back = try await system.run(
                "udpchat-keys", ["import", "--force", retiredDir.appendingPathComponent(retired[0]).path])
            #expect(back.status == 0 && Self.fingerprint(back.output) == old, "\(back.output)")
            await open.close()
        }
    }

    @Test func storeMigrateReportsTheSchema() async throws {
        try await withSystem { system in
            let result = try await system.run("udpchat-store", ["migrate"])
            #expect(result.status == 0 && result.output.contains("0001_initial"), "\(result.output)")
        }
    }

    @Test func badSettingsStopAProgramWithAClearError() async throws {
        try await withSystem { system in
            let result = try await system.run("udpchat-edge", [], environment: ["SERVER_PORT": "70000"])
            #expect(result.status != 0 && result.output.contains("SERVER_PORT=70000"), "\(result.output)")
            let keysMissing = try await system.run("udpchat-keys", ["show", "--dir", system.root.appendingPathComponent("none").path])
            #expect(keysMissing.status != 0 && keysMissing.output.contains("udpchat-keys generate"))
        }
    }

    /// A second edge on a port an edge serves is refused (unless both ask
    /// for REUSE_PORT): it must not take a share of the first one's clients.
    @Test func aSecondEdgeCannotTakeAPortInUse() async throws {
        try await withSystem { system in
            var environment = system.environment
            environment["SERVER_PORT"] = String(system.port)
            environment["EDGE_METRICS_PORT"] = "0"
            let second = try ProgramProcess(
                name: "edge-2", executable: system.binaries.appendingPathComponent("udpchat-edge"), environment: environment,
                directory: system.root)
            defer { Task { _ = await second.stop(signal: SIGKILL) } }
            await #expect(throws: HarnessError.self) { _ = try await second.waitForLine(startingWith: "udpchat-edge ready") }
            #expect(await second.stop() == 1, "\(second.log())")
            #expect(second.log().contains("udpchat-edge: ") && second.log().contains("in use"), "\(second.log())")
            // The first edge still answers its clients.
            let client = try await system.client()
            #expect(try await client.hello() == "Welcome to UDPChat-AI.")
        }
    }

    /// Every server program starts through one runner: a setting it cannot
    /// use, read before serving or while starting, is one line naming the
    /// program and the setting, and exit status 1, with no ready line.
    @Test(arguments: [
        ("udpchat-edge", ["EDGE_METRICS_PORT": "70000"], "EDGE_METRICS_PORT=70000"),
        ("udpchat-store", ["STORE_METRICS_PORT": "70000"], "STORE_METRICS_PORT=70000"),
        ("udpchat-keys", ["KEYS_METRICS_PORT": "70000"], "KEYS_METRICS_PORT=70000"),
        ("udpchat-ai", ["AI_METRICS_PORT": "70000"], "AI_METRICS_PORT=70000"),
        ("udpchat-edge", ["SERVER_PORT": "70000"], "SERVER_PORT=70000"),
        (
            "udpchat-store",
            [
                "STORE_ENDPOINT": "ipc:///tmp/a.sock,ipc:///tmp/b.sock", "STORE_BIND": "ipc:///tmp/a.sock",
                "EVENTS_BIND": "ipc:///tmp/b.sock",
            ],
            "share one database"
        ),
        ("udpchat-ai", ["AI_MODE": "nonsense"], "AI_MODE"),
    ])
    func aServerProgramThatCannotStartSaysWhyInOneLine(_ program: String, _ environment: [String: String], _ says: String)
        async throws
    {
        try await withSystem { system in
            let result = try await system.run(program, [], environment: environment)
            let lines = result.output.split(separator: "\n")
            #expect(result.status == 1, "\(result.output)")
            #expect(lines.count == 1 && lines[0].hasPrefix("\(program): ") && lines[0].contains(says), "\(result.output)")
        }
    }
}

/// The README's first command, as a user runs it (without the build step,
/// which the test command has done).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct QuickStartTests {
    @Test func runScriptStartsEverythingAndCtrlCStopsEverything() async throws {
        let binaries = try TestSystem.binaryDirectory()
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var template = Array("/tmp/uc-XXXXXX".utf8CString)
        let root = URL(fileURLWithPath: String(cString: try #require(mkdtemp(&template))))
        defer { try? FileManager.default.removeItem(at: root) }
        let emptyEnvFile = root.appendingPathComponent("empty.env")
        #expect(FileManager.default.createFile(atPath: emptyEnvFile.path, contents: Data()))
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "BIN_DIR": binaries.path,
            "DATA_DIR": root.path, "SERVER_PORT": "0", "UDPCHAT_ENV_FILE": emptyEnvFile.path, "KEYS_METRICS_PORT": "0",
            "STORE_METRICS_PORT": "0", "EDGE_METRICS_PORT": "0", "AI_METRICS_PORT": "0", "WS_PORT": "0", "WEB_METRICS_PORT": "0",
        ]
        let script = try ProgramProcess(
            name: "run", executable: URL(fileURLWithPath: "/bin/bash"),
            arguments: [repository.appendingPathComponent("deploy/run.sh").path, "--no-build"],
            environment: environment, directory: repository)
        do {
            let ready = try await script.waitForLine(startingWith: "[edge ] udpchat-edge ready", timeout: .seconds(60))
            let port = try #require(TestSystem.port(in: ready, key: "udp"))
            #expect(script.output.contains { $0.hasPrefix("[keys ] udpchat-keys ready") })
            #expect(script.output.contains { $0.hasPrefix("[ai   ] udpchat-ai ready") })
            #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("keys/server_private_key.pem").path))
            let client = try await ChatClient(options: .init(host: "127.0.0.1", port: port, knownHosts: nil))
            try await client.connect()
            #expect(try await client.hello() == "Welcome to UDPChat-AI.")
            await client.close()
            // The page is served, and its bridge relays to this edge.
            let page = try await script.waitForLine(startingWith: "[run  ] or open the web page: http://127.0.0.1:")
            let url = String(page.dropFirst("[run  ] or open the web page: ".count))
            #expect(script.output.contains { $0.hasPrefix("[web  ] udpchat-web ready") && $0.contains("edge=127.0.0.1:\(port)") })
            let served = try await runDetached(URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-s", "--max-time", "5", url])
            #expect(served.output.contains("<title>udpchat</title>"))
            let (fingerprint, hello) = try await WebBridgeTests.handshakeAndHello(url)
            #expect(hello == "Welcome to UDPChat-AI." && !fingerprint.isEmpty)
        } catch {
            await script.stop(signal: SIGKILL)
            throw error
        }
        let pids = script.output.compactMap { line -> Int32? in
            guard line.hasPrefix("[run  ]"), line.contains(" pid ") else { return nil }
            return line.split(separator: " ").last.flatMap { Int32($0) }
        }
        #expect(pids.count == 5)
        let status = await script.stop(signal: SIGINT, timeout: .seconds(30))
        #expect(status == 0, "\(script.output.suffix(10))")
        for pid in pids { #expect(kill(pid, 0) != 0, "pid \(pid) still running") }
    }
}

/// The interactive client, driven through its standard input.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct InteractiveChatTests {
    @Test func chatSendsShowsIncomingMessagesAndRunsCommands() async throws {
        try await withSystem { system in
            let alice = try await system.client()
            _ = try await alice.login(email: "alice@example.com")
            let room = try await alice.createRoom(name: "General")
            _ = try await alice.sendMessage(roomId: room.roomId, content: "earlier")
            let input = system.root.appendingPathComponent("input.fifo").path
            #expect(mkfifo(input, 0o600) == 0)
            let chat = try ProgramProcess(
                name: "chat", executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: [
                    "-c",
                    "exec \"$0\" chat --server 127.0.0.1:\(system.port) --email bob@example.com --room General --known-hosts kh < \(input)",
                    system.binaries.appendingPathComponent("udpchat").path,
                ],
                environment: system.environment, directory: system.root)
            let writer = try #require(FileHandle(forWritingAtPath: input))
            func type(_ line: String) { writer.write(Data((line + "\n").utf8)) }
            defer { Task { await chat.stop(signal: SIGKILL) } }

            _ = try await chat.waitForLine(startingWith: "Logged in as bob <bob@example.com>")
            _ = try await chat.waitForLine(startingWith: "-- General --")
            #expect(try await chat.waitForLine(startingWith: "[").hasSuffix("alice: earlier"))
            type("hello from the terminal")
            let heard = try await alice.expectEvent {
                if case .message(let event) = $0.packet { return event.content == "hello from the terminal" } else { return false }
            }
            if case .message(let event) = heard.packet { #expect(event.name == "bob") }
            // A message from someone else appears while the chat waits for input.
            _ = try await alice.sendMessage(roomId: room.roomId, content: "live from alice")
            let deadline = ContinuousClock.now + .seconds(5)
            while !chat.output.contains(where: { $0.hasSuffix("alice: live from alice") }) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(chat.output.contains { $0.hasSuffix("alice: live from alice") })
            type("/members")
            #expect(try await chat.waitForLine(startingWith: "Members:") == "Members: alice (admin), bob")
            type("/ai")
            _ = try await chat.waitForLine(startingWith: "(asked the AI")
            type("/create Random")
            _ = try await chat.waitForLine(startingWith: "-- Random --")
            type("/rooms")
            #expect(try await chat.waitForLine(startingWith: "Rooms:") == "Rooms: General, Random")
            type("/leave")
            _ = try await chat.waitForLine(startingWith: "-- left Random --")
            type("/quit")
            let deadlineExit = ContinuousClock.now + .seconds(10)
            while chat.isRunning && ContinuousClock.now < deadlineExit { try await Task.sleep(for: .milliseconds(20)) }
            #expect(chat.terminationStatus == 0, "\(chat.output) \(chat.log())")
            try writer.close()
            await alice.close()
        }
    }
}

/// Accounts as an operator manages them, and as users then log in.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct AccountProgramTests {
    /// The original server's SQLite database with alice (password "hunter22"),
    /// bob (no password) and a room with three messages.
    static func legacyDatabase(at path: String) async throws {
        let script = """
            import hashlib, sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            db.executescript('''
            CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT UNIQUE NOT NULL, name TEXT, email TEXT UNIQUE NOT NULL,
              password TEXT, is_admin BOOLEAN DEFAULT 0, created_at INTEGER, updated_at INTEGER, last_active_at INTEGER);
            CREATE TABLE rooms (id INTEGER PRIMARY KEY AUTOINCREMENT, room_id TEXT UNIQUE NOT NULL, name TEXT UNIQUE,
              is_private BOOLEAN DEFAULT 0, created_at INTEGER, last_active_at INTEGER);
            CREATE TABLE members (room_id INTEGER NOT NULL, user_id INTEGER NOT NULL, is_admin BOOLEAN DEFAULT 0, joined_at INTEGER,
              PRIMARY KEY (room_id, user_id));
            CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, room_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
              content TEXT NOT NULL, is_announcement BOOLEAN DEFAULT 0, created_at INTEGER);
            ''')
            md5 = hashlib.md5(b'hunter22').hexdigest()
            db.execute("INSERT INTO users (user_id, name, email, password) VALUES ('a' || hex(randomblob(15)), 'alice', 'alice@example.com', ?)", (md5,))
            db.execute("INSERT INTO users (user_id, name, email) VALUES ('b' || hex(randomblob(15)), 'bob', 'bob@example.com')")
            db.execute("INSERT INTO rooms (room_id, name, created_at, last_active_at) VALUES (lower(hex(randomblob(16))), 'Old times', 1700000000, 1700000100)")
            db.execute("INSERT INTO members VALUES (1, 1, 1, 1700000000), (1, 2, 0, 1700000000)")
            for user, text in ((1, 'one'), (2, 'two'), (1, 'three')):
                db.execute("INSERT INTO messages (room_id, user_id, content, created_at) VALUES (1, ?, ?, 1700000050)", (user, text))
            db.commit()
            """
        let result = try await runDetached(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script, path])
        guard result.status == 0 else { throw HarnessError("cannot make the legacy database: \(result.output)") }
    }

    @Test func operatorsSetPasswordsImportTheOldDatabaseAndUsersLogIn() async throws {
        try await withSystem(settings: ["REQUIRE_PASSWORDS": "true"]) { system in
            // An email alone no longer logs in.
            let client = try await system.client()
            await #expect(throws: ChatClientError.passwordRequired(email: "dave@example.com")) {
                try await client.login(email: "dave@example.com")
            }
            let set = try await system.run("udpchat-store", ["user", "set-password", "dave@example.com"], input: "correct horse battery\n")
            #expect(set.status == 0 && set.output.contains("created dave@example.com"), "\(set.output)")
            #expect(try await system.run("udpchat-store", ["user", "set-password", "eve@example.com"], input: "short\n").status == 1)
            await #expect(throws: ChatClientError.unauthorised("Incorrect password")) {
                try await client.login(email: "dave@example.com", password: "wrong guess")
            }
            #expect(try await client.login(email: "dave@example.com", password: "correct horse battery").name == "dave")

            // The original server's database comes across; alice's MD5 password works once and becomes scrypt.
            let legacy = system.root.appendingPathComponent("chat.db").path
            try await Self.legacyDatabase(at: legacy)
            let imported = try await system.run("udpchat-store", ["import-legacy", legacy])
            #expect(imported.output.contains("imported 2 users, 1 rooms, 2 memberships and 3 messages"), "\(imported.output)")
            #expect(try await system.run("udpchat-store", ["user", "list"]).output.contains("alice@example.com\talice"))
            let alice = try await system.client()
            let user = try await alice.login(email: "alice@example.com", password: "hunter22")
            #expect(user.room?.name == "Old times")
            #expect(try await alice.history(roomId: nil).map(\.content) == ["one", "two", "three"])
            let list = try await system.run("udpchat-store", ["user", "list"]).output
            #expect(
                list.split(separator: "\n").contains { $0.hasPrefix("alice@example.com") && $0.hasSuffix("password: scrypt") }, "\(list)")
            #expect(list.split(separator: "\n").contains { $0.hasPrefix("bob@example.com") && $0.hasSuffix("password: none") })

            let deleted = try await system.run("udpchat-store", ["user", "delete", "bob@example.com"])
            #expect(deleted.output.contains("deleted bob@example.com and 1 of their messages"), "\(deleted.output)")
            #expect(try await system.run("udpchat-store", ["user", "delete", "bob@example.com"]).status == 1)
            await client.close()
            await alice.close()
        }
    }

    @Test func loginAttemptsFromOneAddressAreLimited() async throws {
        try await withSystem(settings: ["LOGINS_PER_SOURCE": "3"]) { system in
            let client = try await system.client()
            for i in 0..<3 { _ = try await client.login(email: "user\(i)@example.com") }
            await #expect(throws: ChatClientError.refused("Too many login attempts from your address; try again in a minute.")) {
                try await client.login(email: "user9@example.com")
            }
            // Other requests still work.
            #expect(try await client.hello() == "Welcome to UDPChat-AI.")
            await client.close()
        }
    }
}
