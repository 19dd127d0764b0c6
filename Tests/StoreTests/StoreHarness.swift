import ChatWire
import Crypto
import Foundation
import GRDB
import IPCMessages
import Logging
import PostgresNIO
import Synchronization
import Testing

@testable import udpchat_store

/// The databases the store's tests run on: SQLite always, PostgreSQL when
/// `UDPCHAT_TEST_POSTGRES` names a server to make scratch databases on
/// (`scripts/test.sh` starts one; `postgres://USER@HOST:PORT/DATABASE`).
enum TestDatabase: String, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    static var available: [TestDatabase] { ScratchPostgres.server == nil ? [.sqlite] : [.sqlite, .postgres] }

    var testDescription: String { rawValue }
}

/// A PostgreSQL database of its own for one test, dropped when it ends.
final class ScratchPostgres: Sendable {
    static var server: PostgresLocation? {
        guard let url = ProcessInfo.processInfo.environment["UDPCHAT_TEST_POSTGRES"], !url.isEmpty else { return nil }
        return try? PostgresLocation(url: url, password: nil)
    }

    let server: PostgresLocation
    let location: PostgresLocation

    init() throws {
        guard let server = Self.server else { throw StoreHarness.HarnessFailure("UDPCHAT_TEST_POSTGRES is unset or not a postgres:// URL") }
        self.server = server
        var location = server
        location.database = "udpchat_test_\(SecureRandom.identifier().prefix(16))"
        self.location = location
        try Self.administer(server, "CREATE DATABASE \(location.database)")
    }

    deinit { try? Self.administer(server, "DROP DATABASE IF EXISTS \(location.database) WITH (FORCE)") }

    static func administer(_ server: PostgresLocation, _ sql: String) throws {
        let link = PostgresLink(location: server, tls: .disable, logger: Logger(label: "test"))
        defer { link.close() }
        try link.simple(try link.connection(), sql)
    }
}

/// A store on a temporary database (SQLite unless asked), with the events it published.
final class StoreHarness: Sendable {
    let directory: URL
    let backend: any StorageBackend
    let scratch: ScratchPostgres?
    let service: StoreService
    private let published = EventLog()

    final class EventLog: Sendable {
        let events = Mutex<[IPCEvent]>([])
    }

    /// The SQLite backend, for tests of SQLite itself.
    var sqlite: SQLiteBackend {
        get throws {
            guard let backend = backend as? SQLiteBackend else { throw HarnessFailure("this test's store is not on SQLite") }
            return backend
        }
    }

    init(
        _ database: TestDatabase = .sqlite, requirePasswords: Bool = false, loginFailures: Int = 5, writeLimits: WriteLimits = WriteLimits(),
        clock: any ServiceClock = SystemClock()
    ) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("udpchat-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        switch database {
        case .sqlite:
            scratch = nil
            backend = try SQLiteBackend(path: directory.appendingPathComponent("test.db").path)
        case .postgres:
            let scratch = try ScratchPostgres()
            self.scratch = scratch
            backend = try PostgresBackend(location: scratch.location, logger: Logger(label: "test"))
        }
        let published = self.published
        service = StoreService(
            backend: backend, sessionIdleSeconds: 600, writeLimits: writeLimits, requirePasswords: requirePasswords,
            loginFailuresPerAccount: loginFailures, clock: clock,
            logger: Logger(label: "test")
        ) { outcomes in
            published.events.withLock { $0.append(contentsOf: outcomes.flatMap(\.events)) }
        }
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Runs a statement written for SQLite (`?` placeholders; Int64 and
    /// String arguments) on whichever database this store has.
    func execute(_ sql: String, _ arguments: [any Sendable] = []) async throws {
        try await backend.write { tx in
            if let sqlite = tx as? SQLiteTransaction {
                let values: [(any DatabaseValueConvertible)?] = arguments.map { $0 as? any DatabaseValueConvertible }
                try sqlite.db.execute(sql: sql, arguments: StatementArguments(values))
            } else if let postgres = tx as? PostgresTransaction {
                var numbered = ""
                var index = 0
                for character in sql {
                    if character == "?" {
                        index += 1
                        numbered += "$\(index)"
                    } else {
                        numbered.append(character)
                    }
                }
                var binds = PostgresBindings()
                for argument in arguments {
                    switch argument {
                    case let number as Int64: binds.append(number)
                    case let number as Int: binds.append(Int64(number))
                    case let text as String: binds.append(text)
                    default: throw HarnessFailure("cannot bind \(argument)")
                    }
                }
                _ = try postgres.pipeline.run(PostgresQuery(unsafeSQL: numbered, binds: binds))
            }
        }
    }

    /// The rows of `table`, on either database.
    func count(_ table: String) async throws -> Int {
        try await backend.read { tx in
            if let sqlite = tx as? SQLiteTransaction { return try Int.fetchOne(sqlite.db, sql: "SELECT count(*) FROM \(table)") ?? -1 }
            let postgres = tx as! PostgresTransaction
            return Int(try postgres.pipeline.run("SELECT count(*) FROM \(unescaped: table)").rows.first?.decode(Int64.self) ?? -1)
        }
    }

    /// Events published so far; clears the list.
    func takeEvents() -> [IPCEvent] {
        published.events.withLock { events in
            defer { events.removeAll() }
            return events
        }
    }

    /// A session as the edge makes it, with its key.
    struct Session {
        let id = SecureRandom.identifier()
        let key = SecureRandom.bytes(32)
        var digest: Data { Data(SHA256.hash(data: key)) }
    }

    /// Sends `op` for `session`, creating its row first if `create`.
    func call(
        _ session: Session, _ op: IPCStoreRequest.OneOf_Op, create: Bool = false, from address: String = "", nonce: [UInt8] = [],
        deadlineUnixMs: Int64 = 0
    ) async -> IPCStoreResponse {
        var request = IPCStoreRequest()
        request.session.sessionID = session.id
        request.session.address = address
        request.session.requestNonce = Data(nonce)
        request.session.deadlineUnixMs = deadlineUnixMs
        if create {
            request.session.wrappedKey = Data([1, 2, 3])
            request.session.keyDigest = session.digest
        }
        request.op = op
        return await service.handle(request)
    }

    /// A new session, created and logged in as `email`.
    func loggedIn(_ email: String) async -> (Session, IPCUserInfo) {
        let session = Session()
        var login = IPCLogin()
        login.email = email
        let response = await call(session, .login(login), create: true)
        return (session, response.welcome)
    }

    /// A new session logged in as `email`, whose account then gets `password`.
    func loggedIn(_ email: String, password: String) async throws -> Session {
        let (session, _) = await loggedIn(email)
        let hash = try PasswordHash.make(password)
        try await backend.write { tx in
            guard let user = try tx.user(email: email) else { throw HarnessFailure("no account \(email)") }
            try tx.setPasswordHash(user: user.rowId, hash: hash)
        }
        return session
    }

    /// A LOGIN as `email` with `password`.
    static func login(_ email: String, _ password: String) -> IPCLogin {
        var login = IPCLogin()
        login.email = email
        login.password = password
        return login
    }

    struct HarnessFailure: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    func createRoom(_ session: Session, _ name: String) async -> IPCStoreResponse {
        var create = IPCCreateRoom()
        create.name = name
        return await call(session, .createRoom(create))
    }

    func join(_ session: Session, _ roomId: String) async -> IPCStoreResponse {
        var join = IPCJoinRoom()
        join.roomID = roomId
        return await call(session, .joinRoom(join))
    }

    func leave(_ session: Session, _ roomId: String) async -> IPCStoreResponse {
        var leave = IPCLeaveRoom()
        leave.roomID = roomId
        return await call(session, .leaveRoom(leave))
    }

    func post(_ session: Session, _ roomId: String, _ content: String) async -> IPCStoreResponse {
        var post = IPCPostMessage()
        post.roomID = roomId
        post.content = content
        return await call(session, .postMessage(post))
    }

    func history(_ session: Session, _ roomId: String?) async -> IPCStoreResponse {
        var list = IPCListMessages()
        if let roomId { list.roomID = roomId }
        return await call(session, .listMessages(list))
    }

    func members(_ session: Session, _ roomId: String?) async -> IPCStoreResponse {
        var list = IPCListMembers()
        if let roomId { list.roomID = roomId }
        return await call(session, .listMembers(list))
    }
}

extension IPCStoreResponse {
    /// The protocol error text, or nil when the request succeeded.
    var errorText: String? {
        if case .error(let error)? = result { return error.message }
        return nil
    }
}
