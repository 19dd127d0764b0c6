import ArgumentParser
import ChatWire
import Foundation
import GRDB
import Logging
import Ops
import PostgresNIO

/// `udpchat-store copy-to DATABASE_URL`: moves the SQLite database into an
/// empty PostgreSQL database, every table with its row ids, in one
/// transaction, checked by counting each table on both sides.
struct CopyTo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy-to",
        abstract: "Copy the SQLite database (DB_PATH) into an empty PostgreSQL database.",
        discussion: """
            Stop udpchat-store first. The PostgreSQL password, if any, comes from DATABASE_PASSWORD_FILE. \
            Users, sessions, rooms, members, messages, AI jobs, room events, delivery cursors and request \
            results are copied in one transaction with their ids; the copy is committed only if every \
            table has as many rows in PostgreSQL as in SQLite. Then set DATABASE_URL and start the store.
            """)

    @Argument(help: "postgres://USER@HOST:PORT/DATABASE[?sslmode=...] (its schema is created if missing; it must hold no rows).")
    var url: String

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-store") {
            let settings = try SettingsReader.load()
            let common = try CommonSettings(settings)
            guard FileManager.default.fileExists(atPath: common.dbPath) else { throw ChatError.storage("no database at \(common.dbPath) (DB_PATH)") }
            let target = try PostgresLocation(url: url, password: try StoreDatabase.password(settings))
            let source = try SQLiteBackend(path: common.dbPath)
            let counts = try DatabaseCopy.run(from: source, to: target, logger: Logger(label: "udpchat-store"))
            print("copied \(common.dbPath) to \(target)")
            for (table, count) in counts { print("\(table)\t\(count)") }
        }
    }
}

enum DatabaseCopy {
    /// Columns PostgreSQL keeps as booleans (SQLite as 0 and 1).
    static let booleans: Set<String> = ["users.is_admin", "rooms.is_private", "members.is_admin", "messages.is_announcement", "sessions.acknowledges"]

    /// Copies every table; returns the rows of each.
    static func run(from source: SQLiteBackend, to target: PostgresLocation, logger: Logger) throws -> [(String, Int)] {
        _ = try PostgresBackend.migrate(location: target, logger: logger)
        let link = PostgresLink(location: target, tls: try PostgresLink.tlsSetting(target), logger: logger)
        defer { link.close() }
        let connection = try link.connection()
        for table in PostgresSchema.tables {
            let rows = try link.query(connection, "SELECT count(*) FROM \(unescaped: table)").rows
            guard try rows.first?.decode(Int64.self) == 0 else {
                throw ChatError.storage("\(target) already holds \(table): copy-to fills an empty database only")
            }
        }
        return try source.pool.read { db in
            try link.simple(connection, "BEGIN")
            do {
                var counts: [(String, Int)] = []
                for table in PostgresSchema.tables {
                    try copy(table, from: db, to: link, connection)
                    let here = try Int64.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? -1
                    let there = try link.query(connection, "SELECT count(*) FROM \(unescaped: table)").rows.first?.decode(Int64.self) ?? -1
                    guard there == here else {
                        throw ChatError.storage("\(table): \(here) rows in SQLite but \(there) in PostgreSQL; nothing was committed")
                    }
                    counts.append((table, Int(here)))
                }
                // The next ids follow every id SQLite gave out (deleted rows' too).
                for table in ["users", "sessions", "rooms", "messages", "ai_jobs"] {
                    let used = max(
                        try Int64.fetchOne(db, sql: "SELECT max(id) FROM \(table)") ?? 0,
                        try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = ?", arguments: [table]) ?? 0)
                    try link.simple(connection, "SELECT setval(pg_get_serial_sequence('\(table)', 'id'), \(used + 1), false)")
                }
                try link.simple(connection, "COMMIT")
                return counts
            } catch {
                try? link.simple(connection, "ROLLBACK")
                throw error
            }
        }
    }

    /// Copies one table row by row.
    private static func copy(_ table: String, from db: Database, to link: PostgresLink, _ connection: PostgresConnection) throws {
        let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(\(table))").map { $0["name"] as String }
        let list = columns.joined(separator: ", ")
        let placeholders = (1...columns.count).map { "$\($0)" }.joined(separator: ", ")
        let sql = "INSERT INTO \(table) (\(list)) VALUES (\(placeholders))"
        let cursor = try Row.fetchCursor(db, sql: "SELECT \(list) FROM \(table)")
        while let row = try cursor.next() {
            var binds = PostgresBindings(capacity: columns.count)
            for (index, column) in columns.enumerated() {
                switch row[index] as DatabaseValue {
                case let value where value.isNull: binds.appendNull()
                case let value:
                    switch value.storage {
                    case .int64(let number):
                        if booleans.contains("\(table).\(column)") { binds.append(number != 0) } else { binds.append(number) }
                    case .double(let number): binds.append(number)
                    case .string(let text): binds.append(text)
                    case .blob(let bytes): try binds.append(bytes)
                    case .null: binds.appendNull()
                    }
                }
            }
            _ = try link.query(connection, PostgresQuery(unsafeSQL: sql, binds: binds))
        }
    }
}
