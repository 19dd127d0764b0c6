import ChatWire
import Foundation
import GRDB

/// Copies users, rooms, members and messages from the original server's
/// SQLite database (docs/protocol.md §9, first revision) into this store. Each
/// room comes with its members and its messages in their original order;
/// passwords come as their MD5 hashes, checked once and replaced by scrypt
/// at the next successful login. Users and rooms already here (same public
/// id) are left as they are, so running the import twice changes nothing.
/// A room whose name is taken here gets " (imported)" added.
enum LegacyImport {
    struct Summary: Equatable, CustomStringConvertible {
        var users = 0
        var rooms = 0
        var members = 0
        var messages = 0
        var skippedUsers = 0
        var skippedRooms = 0

        var description: String {
            "imported \(users) users, \(rooms) rooms, \(members) memberships and \(messages) messages"
                + (skippedUsers + skippedRooms > 0 ? " (already here: \(skippedUsers) users, \(skippedRooms) rooms)" : "")
        }
    }

    static func run(from path: String, into backend: SQLiteBackend) throws -> Summary {
        guard FileManager.default.fileExists(atPath: path) else { throw ChatError.storage("\(path): no such file") }
        var configuration = Configuration()
        configuration.readonly = true
        let legacy = try DatabaseQueue(path: path, configuration: configuration)
        let source = try legacy.read { db -> (users: [Row], rooms: [Row], members: [Row], messages: [Row]) in
            for table in ["users", "rooms", "members", "messages"] where try !db.tableExists(table) {
                throw ChatError.storage("\(path) has no \(table) table: not a database of the original server (its first, SQLite revision)")
            }
            return (
                try Row.fetchAll(db, sql: "SELECT id, user_id, name, email, password, is_admin, created_at, last_active_at FROM users"),
                try Row.fetchAll(db, sql: "SELECT id, room_id, name, is_private, created_at, last_active_at FROM rooms"),
                try Row.fetchAll(db, sql: "SELECT room_id, user_id, is_admin, joined_at FROM members"),
                try Row.fetchAll(db, sql: "SELECT room_id, user_id, content, is_announcement, created_at FROM messages ORDER BY id")
            )
        }
        let now = Int64(Date().timeIntervalSince1970)
        return try backend.pool.write { db in
            var summary = Summary()
            var userIds: [Int64: Int64] = [:]
            for row in source.users {
                let publicId: String = row["user_id"]
                let email = TextRules.trimmed((row["email"] as String?) ?? "").lowercased()
                if let existing = try Int64.fetchOne(
                    db, sql: "SELECT id FROM users WHERE user_id = ? OR email = ?", arguments: [publicId, email])
                {
                    userIds[row["id"]] = existing
                    summary.skippedUsers += 1
                    continue
                }
                let password: String? = row["password"]
                let name = (row["name"] as String?).map(TextRules.trimmed).flatMap { $0.isEmpty ? nil : $0 }
                try db.execute(
                    sql: """
                        INSERT INTO users (user_id, email, name, password_hash, is_admin, created_at, last_active_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        publicId, email, name ?? TextRules.defaultName(forEmail: email),
                        password.flatMap { $0.isEmpty ? nil : PasswordHash.legacy(md5Hex: $0) }, Self.bool(row["is_admin"]),
                        Self.time(row["created_at"], now), Self.time(row["last_active_at"], now),
                    ])
                userIds[row["id"]] = db.lastInsertedRowID
                summary.users += 1
            }
            var roomIds: [Int64: Int64] = [:]
            for row in source.rooms {
                let publicId: String = row["room_id"]
                if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM rooms WHERE room_id = ?)", arguments: [publicId]) == true {
                    summary.skippedRooms += 1
                    continue
                }
                var name = TextRules.trimmed((row["name"] as String?) ?? publicId)
                let base = name
                var suffix = 1
                while try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM rooms WHERE name = ? AND closed_at IS NULL)", arguments: [name]) == true
                {
                    name = suffix == 1 ? "\(base) (imported)" : "\(base) (imported \(suffix))"
                    suffix += 1
                }
                try db.execute(
                    sql: "INSERT INTO rooms (room_id, name, is_private, created_at, last_active_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [
                        publicId, name, Self.bool(row["is_private"]), Self.time(row["created_at"], now),
                        Self.time(row["last_active_at"], now),
                    ])
                roomIds[row["id"]] = db.lastInsertedRowID
                summary.rooms += 1
            }
            for row in source.members {
                guard let room = roomIds[row["room_id"]], let user = userIds[row["user_id"]] else { continue }
                try db.execute(
                    sql: "INSERT OR IGNORE INTO members (room_id, user_id, is_admin, joined_at) VALUES (?, ?, ?, ?)",
                    arguments: [room, user, Self.bool(row["is_admin"]), Self.time(row["joined_at"], now)])
                summary.members += db.changesCount
            }
            for row in source.messages {
                guard let room = roomIds[row["room_id"]], let user = userIds[row["user_id"]], let content = row["content"] as String?
                else { continue }
                try db.execute(
                    sql: "INSERT INTO messages (room_id, user_id, content, is_announcement, created_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [room, user, content, Self.bool(row["is_announcement"]), Self.time(row["created_at"], now)])
                summary.messages += 1
            }
            return summary
        }
    }

    /// Booleans were 0/1 in the first revision (docs/protocol.md §1.3).
    private static func bool(_ value: DatabaseValue) -> Bool {
        if let number = Int64.fromDatabaseValue(value) { return number != 0 }
        if let text = String.fromDatabaseValue(value) { return ["1", "true", "t"].contains(text.lowercased()) }
        return false
    }

    /// Epoch seconds as the first revision stored them; anything else reads as now.
    private static func time(_ value: DatabaseValue, _ now: Int64) -> Int64 {
        if let seconds = Int64.fromDatabaseValue(value) { return seconds }
        if let text = String.fromDatabaseValue(value), let seconds = Int64(text) { return seconds }
        return now
    }
}
