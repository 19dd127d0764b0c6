import ChatWire
import Foundation
import IPC
import Logging
import Ops

/// The database the settings name: SQLite at `DB_PATH` unless
/// `DATABASE_URL` names a PostgreSQL server.
enum StoreDatabase {
    static func location(_ settings: SettingsReader) throws -> DatabaseLocation {
        let common = try CommonSettings(settings)
        let url = settings.string(.databaseURL, default: "")
        guard !url.isEmpty else { return .sqlite(path: common.dbPath) }
        return .postgres(try PostgresLocation(url: url, password: try password(settings)))
    }

    /// The first line of `DATABASE_PASSWORD_FILE`, if set.
    static func password(_ settings: SettingsReader) throws -> String? {
        let file = settings.string(.databasePasswordFile, default: "")
        guard !file.isEmpty else { return nil }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ChatError.configuration("cannot read \(Setting.databasePasswordFile.name) \(file)")
        }
        return String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
    }

    /// Opens the database for serving, applying pending migrations.
    static func open(_ location: DatabaseLocation, logger: Logger) throws -> any StorageBackend {
        switch location {
        case .sqlite(let path): try SQLiteBackend(path: path)
        case .postgres(let postgres): try PostgresBackend(location: postgres, logger: logger)
        }
    }

    /// Applies pending migrations; the names applied now and all applied.
    static func migrate(_ location: DatabaseLocation, logger: Logger) throws -> (applied: [String], all: [String]) {
        switch location {
        case .sqlite(let path):
            try FileOwner.become(ownerOf: path)
            return try SQLiteBackend.migrate(path: path)
        case .postgres(let postgres):
            return try PostgresBackend.migrate(location: postgres, logger: logger)
        }
    }
}

/// The database for an administrative command (the store may be running):
/// one transaction at a time on the calling thread.
enum AdminDatabase {
    case sqlite(SQLiteBackend)
    case postgres(PostgresLink)

    /// Opens the database the settings name (migrated, as the store would).
    static func open() throws -> AdminDatabase {
        let location = try StoreDatabase.location(try SettingsReader.load())
        switch location {
        case .sqlite(let path):
            try FileOwner.become(ownerOf: path)
            return .sqlite(try SQLiteBackend(path: path))
        case .postgres(let postgres):
            let logger = Logger(label: "udpchat-store")
            _ = try PostgresBackend.migrate(location: postgres, logger: logger)
            return .postgres(PostgresLink(location: postgres, tls: try PostgresLink.tlsSetting(postgres), logger: logger))
        }
    }

    func write<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        switch self {
        case .sqlite(let backend): try backend.pool.write { db in try body(SQLiteTransaction(db: db)) }
        case .postgres(let link): try link.transaction(readOnly: false, body)
        }
    }

    func read<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        switch self {
        case .sqlite(let backend): try backend.pool.read { db in try body(SQLiteTransaction(db: db)) }
        case .postgres(let link): try link.transaction(readOnly: true, body)
        }
    }
}
