import ChatWire
import Foundation
import IPCMessages
import Logging
import Ops
import Testing

@testable import udpchat_store

/// What only PostgreSQL has: its settings, its schema kept in step with
/// SQLite's, and the copy from SQLite. (Every store operation runs on both
/// databases in the other suites.)
@Suite struct PostgresTests {
    @Test func continuousIntegrationRunsTheStoreTestsOnPostgres() {
        // scripts/test.sh starts a scratch cluster and sets the URL; in CI a
        // run without it would test SQLite alone and call that passing.
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            #expect(TestDatabase.available.contains(.postgres), "CI=true but UDPCHAT_TEST_POSTGRES is unset")
        }
    }

    @Test func bothDatabasesHaveTheSameNumberedMigrations() {
        #expect(PostgresSchema.migrations.map(\.name) == Schema.migrator.migrations)
    }

    @Test func theURLIsReadAndAPasswordInItIsRefused() throws {
        let tcp = try PostgresLocation(url: "postgres://chat@db.example.net:6543/udpchat?sslmode=verify-full", password: "s3cret")
        #expect(tcp.user == "chat" && tcp.host == "db.example.net" && tcp.port == 6543 && tcp.database == "udpchat")
        #expect(tcp.tls == .verifyFull && tcp.socketPath == nil && tcp.password == "s3cret")
        #expect(!tcp.description.contains("s3cret"))
        let plain = try PostgresLocation(url: "postgresql://chat@127.0.0.1/udpchat", password: nil)
        #expect(plain.port == 5432 && plain.tls == .prefer)
        let socket = try PostgresLocation(url: "postgres://chat@%2Frun%2Fpostgresql/udpchat", password: nil)
        #expect(socket.socketPath == "/run/postgresql/.s.PGSQL.5432" && socket.tls == .disable)

        for bad in [
            "postgres://chat:hunter2@127.0.0.1/udpchat", "mysql://chat@127.0.0.1/udpchat", "postgres://127.0.0.1/udpchat",
            "postgres://chat@127.0.0.1/", "postgres://chat@127.0.0.1/udpchat?sslmode=maybe", "postgres://chat@127.0.0.1/udpchat?user=x",
            "postgres://chat@%2Frun%2Fpostgresql/udpchat?sslmode=require",
        ] {
            #expect { try PostgresLocation(url: bad, password: nil) } throws: { ($0 as? ChatError)?.code == .configuration }
        }
        do {
            _ = try PostgresLocation(url: "postgres://chat:hunter2@127.0.0.1/udpchat", password: nil)
        } catch {
            #expect("\(error)".contains("DATABASE_PASSWORD_FILE") && !"\(error)".contains("hunter2"))
        }
    }

    @Test func theSettingsChooseTheDatabase() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("udpchat-db-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let sqlite = try StoreDatabase.location(
            SettingsReader.load(environment: ["UDPCHAT_ENV_FILE": "/dev/null", "DB_PATH": directory.path + "/x.db"]))
        guard case .sqlite(let path) = sqlite else {
            Issue.record("expected SQLite, got \(sqlite)")
            return
        }
        #expect(path == directory.path + "/x.db")
        let file = directory.appendingPathComponent("password")
        try "pa ss\nignored\n".write(to: file, atomically: true, encoding: .utf8)
        let postgres = try StoreDatabase.location(
            SettingsReader.load(environment: [
                "UDPCHAT_ENV_FILE": "/dev/null", "DATABASE_URL": "postgres://chat@127.0.0.1:5433/udpchat", "DATABASE_PASSWORD_FILE": file.path,
            ]))
        guard case .postgres(let location) = postgres else {
            Issue.record("expected PostgreSQL, got \(postgres)")
            return
        }
        #expect(location.password == "pa ss" && location.port == 5433)
        #expect {
            try StoreDatabase.location(
                SettingsReader.load(environment: [
                    "UDPCHAT_ENV_FILE": "/dev/null", "DATABASE_URL": "postgres://chat@127.0.0.1/udpchat",
                    "DATABASE_PASSWORD_FILE": directory.path + "/missing",
                ]))
        } throws: { ($0 as? ChatError)?.code == .configuration }
    }

    /// The server asks for a password (scripts/lib/scratch-postgres.sh has
    /// the role udpchat_password sign in with SCRAM): the one in
    /// DATABASE_PASSWORD_FILE is accepted, a wrong one refused, and neither
    /// shows in the error.
    @Test(.enabled(if: TestDatabase.available.contains(.postgres))) func thePasswordInItsFileSignsIn() async throws {
        let server = try #require(ScratchPostgres.server)
        let password = SecureRandom.identifier()
        let database = "udpchat_password_\(SecureRandom.identifier().prefix(12))"
        try ScratchPostgres.administer(server, "DROP ROLE IF EXISTS udpchat_password")
        try ScratchPostgres.administer(server, "CREATE ROLE udpchat_password LOGIN PASSWORD '\(password)'")
        try ScratchPostgres.administer(server, "CREATE DATABASE \(database) OWNER udpchat_password")
        defer {
            try? ScratchPostgres.administer(server, "DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
            try? ScratchPostgres.administer(server, "DROP ROLE IF EXISTS udpchat_password")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("udpchat-db-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = "postgres://udpchat_password@\(server.host):\(server.port)/\(database)?sslmode=disable"
        for (written, accepted) in [(password + "\n", true), ("wrong-" + password, false)] {
            let file = directory.appendingPathComponent("password")
            try written.write(to: file, atomically: true, encoding: .utf8)
            let chosen = try StoreDatabase.location(
                SettingsReader.load(environment: ["UDPCHAT_ENV_FILE": "/dev/null", "DATABASE_URL": url, "DATABASE_PASSWORD_FILE": file.path]))
            guard case .postgres(let location) = chosen else {
                Issue.record("expected PostgreSQL, got \(chosen)")
                return
            }
            do {
                let backend = try PostgresBackend(location: location, logger: Logger(label: "test"))
                let jobs = try await backend.read { tx in try tx.queuedJobs().count }
                #expect(
                    accepted && jobs == 0,
                    "signed in with \(written): the server must ask udpchat_password for its password (scripts/lib/scratch-postgres.sh sets that)")
            } catch {
                #expect(!accepted, "\(error)")
                let text = "\(error)"
                #expect(text.contains("refused the connection: password authentication failed") && !text.contains(password), "\(text)")
            }
        }
    }

    /// Statements whose answers are not read are queued and sent with the
    /// next awaited one (PostgresPipeline): a failure among them still
    /// undoes its own savepoint alone and is reported as itself, and a
    /// refused savepoint's statements count for nothing, sent or not.
    @Test(.enabled(if: TestDatabase.available.contains(.postgres))) func queuedStatementsFailInTheirOwnSavepoint() async throws {
        let scratch = try ScratchPostgres()
        let backend = try PostgresBackend(location: scratch.location, logger: Logger(label: "test"))
        try await backend.write { tx in _ = try (tx as! PostgresTransaction).pipeline.run("CREATE TABLE probe (id INT PRIMARY KEY)") }
        let failures = try await backend.write { tx -> [String] in
            let pipeline = (tx as! PostgresTransaction).pipeline
            var failures: [String] = []
            do {
                try tx.inSavepoint { () -> (value: Void, keep: Bool) in
                    pipeline.send("INSERT INTO probe VALUES (1)")
                    pipeline.send("INSERT INTO probe VALUES (1)")
                    pipeline.send("INSERT INTO probe VALUES (2)")
                    return ((), true)
                }
                failures.append("kept")
            } catch {
                failures.append("\(error)")
            }
            try tx.inSavepoint { () -> (value: Void, keep: Bool) in
                pipeline.send("INSERT INTO probe VALUES (3)")
                return ((), false)
            }
            try tx.inSavepoint { () -> (value: Void, keep: Bool) in
                pipeline.send("INSERT INTO probe VALUES (4)")
                _ = try pipeline.run("SELECT 1")
                return ((), false)
            }
            try tx.inSavepoint { () -> (value: Void, keep: Bool) in
                pipeline.send("INSERT INTO probe VALUES (5)")
                return ((), true)
            }
            do {
                try tx.inSavepoint { () -> (value: Void, keep: Bool) in
                    pipeline.send("INSERT INTO no_such_table VALUES (1)")
                    _ = try pipeline.run("SELECT 1")
                    return ((), true)
                }
                failures.append("kept")
            } catch {
                failures.append("\(error)")
            }
            return failures
        }
        #expect(failures.count == 2)
        #expect(failures.first?.contains("duplicate key") == true, "\(failures)")
        #expect(failures.last?.contains("no_such_table") == true, "\(failures)")
        let ids = try await backend.read { tx in
            try (tx as! PostgresTransaction).pipeline.run("SELECT id FROM probe ORDER BY id").rows.map { try $0.decode(Int32.self) }
        }
        #expect(ids == [5])
    }

    /// A failure outside any savepoint (here a statement of the
    /// transaction itself) is the one a later write reports, not the
    /// missing savepoint it leaves behind; a transaction that failed is
    /// not reported as committed even when its body swallowed the error.
    @Test(.enabled(if: TestDatabase.available.contains(.postgres))) func aFailedTransactionSaysWhyAndIsNotCommitted() async throws {
        let scratch = try ScratchPostgres()
        let backend = try PostgresBackend(location: scratch.location, logger: Logger(label: "test"))
        try await backend.write { tx in _ = try (tx as! PostgresTransaction).pipeline.run("CREATE TABLE probe (id INT PRIMARY KEY)") }
        do {
            try await backend.write { tx in
                let pipeline = (tx as! PostgresTransaction).pipeline
                pipeline.send("INSERT INTO no_such_table VALUES (1)")
                try tx.inSavepoint { () -> (value: Void, keep: Bool) in
                    _ = try pipeline.run("INSERT INTO probe VALUES (1)")
                    return ((), true)
                }
            }
            Issue.record("committed a transaction that failed")
        } catch {
            #expect("\(error)".contains("no_such_table") && !"\(error)".contains("savepoint"), "\(error)")
        }
        do {
            try await backend.write { tx in
                let pipeline = (tx as! PostgresTransaction).pipeline
                _ = try pipeline.run("INSERT INTO probe VALUES (2)")
                _ = try? pipeline.run("INSERT INTO no_such_table VALUES (1)")
            }
            Issue.record("a transaction that failed was reported as committed")
        } catch {
            #expect("\(error)".contains("did not commit"), "\(error)")
        }
        let count = try await backend.read { tx in
            try (tx as! PostgresTransaction).pipeline.run("SELECT count(*) FROM probe").rows.first?.decode(Int64.self)
        }
        #expect(count == 0)
    }

    /// A write that asks nothing of the database takes no turn: it returns
    /// while another store's write holds the turn.
    @Test(.enabled(if: TestDatabase.available.contains(.postgres))) func aWriteThatReadsNothingTakesNoTurn() async throws {
        let scratch = try ScratchPostgres()
        let backend = try PostgresBackend(location: scratch.location, logger: Logger(label: "test"))
        let other = PostgresLink(location: scratch.location, tls: .disable, logger: Logger(label: "test"))
        defer { other.close() }
        let holding = try other.connection()
        try other.simple(holding, "BEGIN")
        try other.simple(holding, "SELECT pg_advisory_xact_lock(\(PostgresLink.writerLock))")
        let answer = try await backend.write { _ in 42 }
        try other.simple(holding, "COMMIT")
        #expect(answer == 42)
    }

    /// Two stores whose batches lock the same rooms in opposite order: the
    /// second batch waits for the first to commit instead of deadlocking
    /// with it (which PostgreSQL breaks only after a second, failing one).
    @Test(.enabled(if: TestDatabase.available.contains(.postgres))) func twoStoresLockingRoomsInOppositeOrderDoNotDeadlock() async throws {
        let scratch = try ScratchPostgres()
        let a = try PostgresBackend(location: scratch.location, logger: Logger(label: "test"))
        let b = try PostgresBackend(location: scratch.location, logger: Logger(label: "test"))
        try await a.write { tx in
            _ = try tx.insertRoom(roomId: "x", name: "X", now: 1)
            _ = try tx.insertRoom(roomId: "y", name: "Y", now: 1)
        }
        let observer = PostgresLink(location: scratch.location, tls: .disable, logger: Logger(label: "test"))
        defer { observer.close() }
        let watching = try observer.connection()
        /// Waits (at most 20 s) until a transaction of the database waits for a lock.
        @Sendable func someoneWaits() throws {
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                let waiting = try observer.query(
                    watching,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).rows.first?.decode(Int64.self) ?? 0
                if waiting > 0 { return }
                Thread.sleep(forTimeInterval: 0.01)
            }
            throw ChatError.storage("nothing waited for a lock within 20 s")
        }
        let (holdsX, holding) = AsyncStream<Void>.makeStream()
        async let first: Void = a.write { tx in
            let pipeline = (tx as! PostgresTransaction).pipeline
            _ = try pipeline.run("UPDATE rooms SET last_active_at = 2 WHERE room_id = 'x'")
            holding.yield()
            try someoneWaits()  // b, for its turn or for room x
            _ = try pipeline.run("UPDATE rooms SET last_active_at = 2 WHERE room_id = 'y'")
        }
        for await _ in holdsX { break }
        async let second: Void = b.write { tx in
            let pipeline = (tx as! PostgresTransaction).pipeline
            _ = try pipeline.run("UPDATE rooms SET last_active_at = 3 WHERE room_id = 'y'")
            _ = try pipeline.run("UPDATE rooms SET last_active_at = 3 WHERE room_id = 'x'")
        }
        try await first
        try await second
        let times = try await a.read { tx in
            try (tx as! PostgresTransaction).pipeline.run("SELECT last_active_at FROM rooms ORDER BY room_id").rows.map { try $0.decode(Int64.self) }
        }
        #expect(times == [3, 3], "the second store's batch ran after the first's")
    }

    @Test func anUnreachableServerIsAClearError() throws {
        // A port nothing listens on (bound, then closed).
        let location = try PostgresLocation(url: "postgres://chat@127.0.0.1:1/udpchat?sslmode=disable", password: nil)
        do {
            _ = try PostgresBackend(location: location, logger: Logger(label: "test"))
            Issue.record("connected to nothing")
        } catch {
            #expect("\(error)".contains("unreachable") && "\(error)".contains("127.0.0.1:1"))
        }
    }

    /// `udpchat-store copy-to`: a SQLite store's rows, ids and all, in
    /// PostgreSQL, where a store then serves them; a second copy is refused.
    @Test(.enabled(if: TestDatabase.available.contains(.postgres))) func aSQLiteDatabaseIsCopiedToPostgres() async throws {
        let source = try StoreHarness(.sqlite)
        let (alice, _) = await source.loggedIn("alice@example.com")
        let (bob, _) = await source.loggedIn("bob@example.com")
        let room = await source.createRoom(alice, "General").roomCreated.roomID
        _ = await source.join(bob, room)
        for text in ["one", "two", "three"] { _ = await source.post(alice, room, text) }
        let before = await source.history(alice, room).history.items

        let scratch = try ScratchPostgres()
        let counts = try DatabaseCopy.run(from: try source.sqlite, to: scratch.location, logger: Logger(label: "test"))
        let rows = Dictionary(uniqueKeysWithValues: counts)
        #expect(rows["users"] == 2 && rows["rooms"] == 1 && rows["members"] == 2 && rows["messages"] == 3 && rows["sessions"] == 2)

        let copy = try PostgresBackend(location: scratch.location, logger: Logger(label: "test"))
        let service = StoreService(backend: copy, sessionIdleSeconds: 600, logger: Logger(label: "test")) { _ in }
        var request = IPCStoreRequest()
        request.session.sessionID = alice.id
        request.op = .listMessages({
            var list = IPCListMessages()
            list.roomID = room
            return list
        }())
        let after = await service.handle(request).history.items
        #expect(after.map(\.messageID) == before.map(\.messageID) && after.map(\.content) == ["one", "two", "three"])
        // New rows take ids after the copied ones.
        let newRoom = try await copy.write { tx in try tx.insertRoom(roomId: SecureRandom.identifier(), name: "Later", now: 1) }
        #expect(newRoom.rowId == 2)

        #expect { try DatabaseCopy.run(from: try source.sqlite, to: scratch.location, logger: Logger(label: "test")) } throws: { ($0 as? ChatError)?.code == .storage }
    }
}
