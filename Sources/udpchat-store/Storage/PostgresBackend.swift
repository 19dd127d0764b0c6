import ChatWire
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// PostgreSQL through postgres-nio, selected by `DATABASE_URL`.
///
/// The operations are written once, synchronously, against
/// ``StoreTransaction``; here each transaction runs on a thread of the
/// backend's own pool (never on an event loop or the cooperative pool) and
/// waits for each statement's answer. Writes go through one connection, one
/// transaction at a time, as with SQLite: the group commit batches requests
/// into one transaction, so the round trips per request stay few. Reads use
/// a small pool of connections of their own. A connection that fails is
/// opened again at the next transaction.
final class PostgresBackend: StorageBackend {
    let location: PostgresLocation
    private let logger: Logger
    private let writerThreads: NIOThreadPool
    private let readerThreads: NIOThreadPool
    private let writer: PostgresLink
    private let readers: NIOLockedValueBox<[PostgresLink]>

    /// Implementation constant: connections (and threads) for reads.
    static let readConnections = 2

    /// Connects, and applies pending migrations.
    init(location: PostgresLocation, logger: Logger) throws {
        self.location = location
        self.logger = logger
        let tls = try PostgresLink.tlsSetting(location)
        writer = PostgresLink(location: location, tls: tls, logger: logger)
        readers = NIOLockedValueBox((0..<Self.readConnections).map { _ in PostgresLink(location: location, tls: tls, logger: logger) })
        writerThreads = NIOThreadPool(numberOfThreads: 1)
        readerThreads = NIOThreadPool(numberOfThreads: Self.readConnections)
        writerThreads.start()
        readerThreads.start()
        do {
            _ = try Self.migrate(writer)
        } catch {
            try? writerThreads.syncShutdownGracefully()
            try? readerThreads.syncShutdownGracefully()
            throw error
        }
    }

    deinit {
        writer.close()
        for link in readers.withLockedValue({ $0 }) { link.close() }
        try? writerThreads.syncShutdownGracefully()
        try? readerThreads.syncShutdownGracefully()
    }

    /// Applies pending migrations on `location`; returns the names applied now and all applied.
    static func migrate(location: PostgresLocation, logger: Logger) throws -> (applied: [String], all: [String]) {
        let link = PostgresLink(location: location, tls: try PostgresLink.tlsSetting(location), logger: logger)
        defer { link.close() }
        return try migrate(link)
    }

    /// Each migration in its own transaction, under an advisory lock, so that
    /// stores starting together apply each once.
    private static func migrate(_ link: PostgresLink) throws -> (applied: [String], all: [String]) {
        let connection = try link.connection()
        try link.simple(connection, "BEGIN")
        do {
            try link.simple(connection, "SELECT pg_advisory_xact_lock(\(migrationLock))")
            try link.simple(connection, "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            try link.simple(connection, "COMMIT")
        } catch {
            try? link.simple(connection, "ROLLBACK")
            throw error
        }
        var applied: [String] = []
        for migration in PostgresSchema.migrations {
            try link.simple(connection, "BEGIN")
            do {
                try link.simple(connection, "SELECT pg_advisory_xact_lock(\(migrationLock))")
                let done = try link.query(connection, "SELECT 1 FROM schema_migrations WHERE name = \(migration.name)").rows
                if done.isEmpty {
                    try link.simple(connection, migration.sql)
                    _ = try link.query(
                        connection, "INSERT INTO schema_migrations (name, applied_at) VALUES (\(migration.name), \(Int64(Date().timeIntervalSince1970)))")
                    applied.append(migration.name)
                }
                try link.simple(connection, "COMMIT")
            } catch {
                try? link.simple(connection, "ROLLBACK")
                throw error
            }
        }
        let all = try link.query(connection, "SELECT name FROM schema_migrations ORDER BY name").rows.map { try $0.decode(String.self) }
        return (applied, all)
    }

    /// Implementation constant: the advisory lock key migrations hold.
    private static let migrationLock: Int64 = 0x7564_7063_6861_7401

    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await readerThreads.runIfActive { [readers] in
            guard let link = readers.withLockedValue({ $0.popLast() }) else { throw ChatError.storage("no PostgreSQL reader free") }
            defer { readers.withLockedValue { $0.append(link) } }
            return try link.transaction(readOnly: true, body)
        }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await writerThreads.runIfActive { [writer] in try writer.transaction(readOnly: false, body) }
    }
}

/// One connection to PostgreSQL, opened when first needed and again after
/// it failed; used by one thread at a time.
final class PostgresLink: @unchecked Sendable {
    let location: PostgresLocation
    let tls: PostgresConnection.Configuration.TLS
    let logger: Logger
    private var current: PostgresConnection?
    private static let ids = NIOLockedValueBox(0)

    init(location: PostgresLocation, tls: PostgresConnection.Configuration.TLS, logger: Logger) {
        self.location = location
        self.tls = tls
        self.logger = logger
    }

    static func tlsSetting(_ location: PostgresLocation) throws -> PostgresConnection.Configuration.TLS {
        switch location.tls {
        case .disable:
            return .disable
        case .prefer, .require:
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            let context = try NIOSSLContext(configuration: configuration)
            return location.tls == .prefer ? .prefer(context) : .require(context)
        case .verifyFull:
            return .require(try NIOSSLContext(configuration: TLSConfiguration.makeClientConfiguration()))
        }
    }

    func connection() throws -> PostgresConnection {
        if let current, !current.isClosed { return current }
        var configuration: PostgresConnection.Configuration
        if let socket = location.socketPath {
            configuration = .init(unixSocketPath: socket, username: location.user, password: location.password, database: location.database)
        } else {
            configuration = .init(
                host: location.host, port: location.port, username: location.user, password: location.password,
                database: location.database, tls: tls)
        }
        configuration.options.connectTimeout = .seconds(10)
        let id = Self.ids.withLockedValue {
            $0 += 1
            return $0
        }
        do {
            let connection = try PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: id, logger: logger
            ).wait()
            // No statement waits for ever (a lock held by a stuck peer).
            _ = try connection.query("SET statement_timeout = '30s'", logger: logger).wait()
            // Every write waits for the one in progress (writerLock): a
            // store that stops in the middle of one (hung, or cut off)
            // loses its session, and the turn, after 30 s.
            _ = try connection.query("SET idle_in_transaction_session_timeout = '30s'", logger: logger).wait()
            current = connection
            return connection
        } catch {
            // The server answered (a wrong password, an unknown database)
            // or it could not be reached at all.
            let answered = (error as? PSQLError)?.serverInfo != nil
            throw ChatError.storage("PostgreSQL at \(location) \(answered ? "refused the connection" : "is unreachable"): \(Self.describe(error))")
        }
    }

    func close() {
        if let current { try? current.close().wait() }
        current = nil
    }

    /// Runs `body` in a transaction; commits unless it throws. BEGIN goes
    /// out with the first statement awaited (``PostgresPipeline``): it
    /// fails only with the connection, and then so does all after it.
    func transaction<T>(readOnly: Bool, _ body: (any StoreTransaction) throws -> T) throws -> T {
        let connection = try connection()
        let pipeline = PostgresPipeline(connection: connection, logger: logger)
        let start = pipeline.mark
        pipeline.send(readOnly ? "BEGIN READ ONLY" : "BEGIN")
        // One writing transaction at a time in the database, whichever
        // store runs it: a batch locks rows (sessions, rooms) in the order
        // of its requests, so two batches running at once could each wait
        // for a row the other holds, and a deadlock costs a second before
        // PostgreSQL breaks it (measured: two stores under load deadlocked
        // many times a second). Taken before any row lock, so a batch
        // waits here holding nothing. Reads take no lock.
        if !readOnly { pipeline.send("SELECT pg_advisory_xact_lock(\(Self.writerLock))") }
        let begun = pipeline.mark
        let value: T
        do {
            value = try body(PostgresTransaction(pipeline: pipeline))
        } catch {
            do {
                if pipeline.discard(since: start) { try pipeline.rollback("ROLLBACK") }
            } catch {
                close()  // in an unknown state: the next transaction connects again
            }
            throw error
        }
        // Nothing asked of the database (every write refused before it
        // read anything): no transaction, and no turn taken from the others.
        if pipeline.untouched(since: begun) {
            _ = pipeline.discard(since: start)
            return value
        }
        do {
            try pipeline.commit()
        } catch {
            close()
            throw error
        }
        return value
    }

    /// Implementation constant: the advisory lock key every writing
    /// transaction holds (migrations hold `migrationLock`).
    static let writerLock: Int64 = 0x7564_7063_6861_7402

    /// A statement with binds; its rows and how many rows it changed.
    func query(_ connection: PostgresConnection, _ query: PostgresQuery) throws -> (rows: [PostgresRow], changed: Int) {
        do {
            let result = try connection.query(query, logger: logger).wait()
            return (Array(result.rows), result.metadata.rows ?? 0)
        } catch {
            throw Self.failure(error)
        }
    }

    /// A statement's failure as the store reports it.
    static func failure(_ error: any Error) -> ChatError {
        ChatError.storage("PostgreSQL: \(describe(error))")
    }

    /// Statements without binds, separated by semicolons (none may hold
    /// one in a literal), run one by one.
    func simple(_ connection: PostgresConnection, _ sql: String) throws {
        for statement in sql.split(separator: ";") where !statement.allSatisfy(\.isWhitespace) {
            _ = try query(connection, PostgresQuery(unsafeSQL: String(statement)))
        }
    }

    /// The server's message and SQLSTATE, which `PSQLError` keeps out of its description.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let fields = error.serverInfo, let message = fields[.message] {
            return "\(message) (SQLSTATE \(fields[.sqlState] ?? "?"))"
        }
        return "\(error.code)\(error.underlying.map { ": \($0)" } ?? "")"
    }
}
