import ArgumentParser
import ChatWire
import Foundation
import GRDB
import IPC
import Ops

/// `udpchat-store backup PATH`: a consistent copy of the live database,
/// taken with SQLite's online backup while the store keeps serving.
struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the database to PATH while the store runs (SQLite's online backup; a consistent snapshot).",
        discussion: "The copy is written beside PATH, checked with PRAGMA integrity_check, then renamed into place.")

    @Argument(help: "File to write (refused if it exists, unless --force).")
    var path: String
    @Flag(help: "Replace PATH if it exists.")
    var force = false

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-store") {
            let database = try DatabaseFiles.sqlitePath()
            guard FileManager.default.fileExists(atPath: database) else {
                throw ChatError.storage("no database at \(database) (DB_PATH)")
            }
            try FileOwner.become(ownerOf: database)
            let counts = try DatabaseFiles.copy(from: database, to: path, force: force)
            print("backup: \(path) from \(database)")
            print("contains \(counts.users) users, \(counts.rooms) rooms, \(counts.messages) messages")
        }
    }
}

/// `udpchat-store restore PATH`: puts a backup in place of the database.
struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the database with a backup. Stop udpchat-store first.",
        discussion: """
            The backup is checked first; the current database is kept beside it as \
            udpchat.db.before-restore-TIMESTAMP. The copy goes through SQLite, so the database's \
            WAL files are handled (never copy a live database's file with cp).
            """)

    @Argument(help: "Backup file written by `udpchat-store backup`.")
    var path: String

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-store") {
            let database = try DatabaseFiles.sqlitePath()
            guard FileManager.default.fileExists(atPath: path) else { throw ChatError.storage("no backup at \(path)") }
            try FileOwner.become(ownerOf: database)
            try DatabaseFiles.check(path)
            var kept: String?
            if FileManager.default.fileExists(atPath: database) {
                let stamp = Int(Date().timeIntervalSince1970)
                kept = "\(database).before-restore-\(stamp)"
                _ = try DatabaseFiles.copy(from: database, to: kept!, force: false)
            }
            let counts = try DatabaseFiles.copy(from: path, to: database, force: true, inPlace: true)
            print("restored: \(database) from \(path)")
            print("contains \(counts.users) users, \(counts.rooms) rooms, \(counts.messages) messages")
            if let kept { print("previous database kept at \(kept)") }
        }
    }
}

enum DatabaseFiles {
    /// The SQLite database's path (DB_PATH); PostgreSQL is backed up with its own tools.
    static func sqlitePath() throws -> String {
        let settings = try SettingsReader.load()
        if case .postgres(let location) = try StoreDatabase.location(settings) {
            throw ChatError.storage("DATABASE_URL names PostgreSQL (\(location)): back it up and restore it with pg_dump and pg_restore")
        }
        return try CommonSettings(settings).dbPath
    }

    struct Counts {
        var users = 0
        var rooms = 0
        var messages = 0
    }

    /// Copies database `source` to `target` with SQLite's backup API. Not
    /// in place: through a temporary file and a rename. In place: into the
    /// existing database (its WAL included) under SQLite's locks.
    static func copy(from source: String, to target: String, force: Bool, inPlace: Bool = false) throws -> Counts {
        if FileManager.default.fileExists(atPath: target) && !force {
            throw ChatError.storage("\(target) exists; use --force to replace it")
        }
        let folder = (target as NSString).deletingLastPathComponent
        guard access(folder.isEmpty ? "." : folder, W_OK) == 0 else {
            throw ChatError.storage(
                "cannot write in \(folder.isEmpty ? "." : folder) as uid \(geteuid()) (the database's owner): choose a directory it can write"
            )
        }
        var readOnly = Configuration()
        readOnly.readonly = true
        let from = try DatabaseQueue(path: source, configuration: readOnly)
        if inPlace {
            let to = try DatabaseQueue(path: target)
            try from.backup(to: to)
            try to.close()
            try from.close()
            return try check(target)
        }
        let temporary = target + ".partial"
        try? FileManager.default.removeItem(atPath: temporary)
        do {
            let to = try DatabaseQueue(path: temporary)
            try from.backup(to: to)
            // A single self-contained file: no -wal or -shm beside it.
            try to.writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode = DELETE") }
            try to.close()
            try from.close()
            let counts = try check(temporary)
            guard rename(temporary, target) == 0 else { throw ChatError.storage("cannot rename \(temporary) to \(target): errno \(errno)") }
            return counts
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// Runs `PRAGMA integrity_check` and counts what the database holds.
    @discardableResult
    static func check(_ path: String) throws -> Counts {
        var readOnly = Configuration()
        readOnly.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: readOnly)
        defer { try? queue.close() }
        return try queue.read { db in
            let result = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            guard result == ["ok"] else { throw ChatError.storage("\(path) fails its integrity check: \(result.prefix(5))") }
            guard try db.tableExists("messages") else { throw ChatError.storage("\(path) is not a udpchat database") }
            return Counts(
                users: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users") ?? 0,
                rooms: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rooms") ?? 0,
                messages: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM messages") ?? 0)
        }
    }
}
