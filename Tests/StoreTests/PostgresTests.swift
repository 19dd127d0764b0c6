import Common
import Foundation
import Logging
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
            #expect(throws: StoreFailure.self, "\(bad)") { try PostgresLocation(url: bad, password: nil) }
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
        #expect(throws: StoreFailure.self) {
            try StoreDatabase.location(
                SettingsReader.load(environment: [
                    "UDPCHAT_ENV_FILE": "/dev/null", "DATABASE_URL": "postgres://chat@127.0.0.1/udpchat",
                    "DATABASE_PASSWORD_FILE": directory.path + "/missing",
                ]))
        }
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

        #expect(throws: StoreFailure.self) { try DatabaseCopy.run(from: try source.sqlite, to: scratch.location, logger: Logger(label: "test")) }
    }
}
