import ChatWire
import Crypto
import Foundation
import GRDB
import IPCMessages
import Testing

@testable import udpchat_store

/// The original server's first (SQLite) revision, as docs/protocol.md §9 describes it.
enum LegacyFixture {
    static func make(at path: String) throws {
        let db = try DatabaseQueue(path: path)
        try db.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT UNIQUE NOT NULL, name TEXT,
                        email TEXT UNIQUE NOT NULL, password TEXT, is_admin BOOLEAN DEFAULT 0, created_at INTEGER,
                        updated_at INTEGER, last_active_at INTEGER);
                    CREATE TABLE sessions (id INTEGER PRIMARY KEY, session_id TEXT UNIQUE NOT NULL, user_id INTEGER,
                        session_key TEXT UNIQUE NOT NULL, created_at INTEGER, last_active_at INTEGER);
                    CREATE TABLE rooms (id INTEGER PRIMARY KEY AUTOINCREMENT, room_id TEXT UNIQUE NOT NULL, name TEXT UNIQUE,
                        is_private BOOLEAN DEFAULT 0, created_at INTEGER, last_active_at INTEGER);
                    CREATE TABLE members (room_id INTEGER NOT NULL, user_id INTEGER NOT NULL, is_admin BOOLEAN DEFAULT 0,
                        joined_at INTEGER, PRIMARY KEY (room_id, user_id));
                    CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, room_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
                        content TEXT NOT NULL, is_announcement BOOLEAN DEFAULT 0, created_at INTEGER);
                    """)
            let md5 = Hex.encode([UInt8](Insecure.MD5.hash(data: Array("hunter22".utf8))))
            try db.execute(
                sql: "INSERT INTO users (user_id, name, email, password, is_admin, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: ["aaaa0000aaaa0000aaaa0000aaaa0000", "Alice", "alice@example.com", md5, 1, 1_700_000_000])
            try db.execute(
                sql: "INSERT INTO users (user_id, name, email, password, created_at) VALUES (?, ?, ?, NULL, ?)",
                arguments: ["bbbb0000bbbb0000bbbb0000bbbb0000", "bob", "bob@example.com", 1_700_000_001])
            try db.execute(
                sql: "INSERT INTO rooms (room_id, name, created_at, last_active_at) VALUES (?, ?, ?, ?)",
                arguments: ["cccc0000cccc0000cccc0000cccc0000", "General", 1_700_000_000, 1_700_000_100])
            try db.execute(
                sql: "INSERT INTO members (room_id, user_id, is_admin, joined_at) VALUES (1, 1, 1, 1700000000), (1, 2, 0, 1700000001)")
            for (user, text) in [(1, "first"), (2, "second"), (1, "third")] {
                try db.execute(
                    sql: "INSERT INTO messages (room_id, user_id, content, created_at) VALUES (1, ?, ?, 1700000050)",
                    arguments: [user, text])
            }
        }
    }
}

@Suite struct LegacyImportTests {
    @Test func importsUsersRoomsMembersAndMessagesOnce() async throws {
        let store = try StoreHarness()
        let legacy = store.directory.appendingPathComponent("chat.db").path
        try LegacyFixture.make(at: legacy)
        // A room of the same name already here: the imported one is renamed.
        let (carol, _) = await store.loggedIn("carol@example.com")
        _ = await store.createRoom(carol, "General")
        let summary = try LegacyImport.run(from: legacy, into: try store.sqlite)
        #expect(summary == LegacyImport.Summary(users: 2, rooms: 1, members: 2, messages: 3))
        let again = try LegacyImport.run(from: legacy, into: try store.sqlite)
        #expect(again.users == 0 && again.rooms == 0 && again.messages == 0 && again.skippedUsers == 2 && again.skippedRooms == 1)

        // bob has no password: his email logs him in, into the imported room, with its history in order.
        let (bob, bobUser) = await store.loggedIn("bob@example.com")
        #expect(bobUser.userID == "bbbb0000bbbb0000bbbb0000bbbb0000" && bobUser.room.name == "General (imported)")
        let history = await store.history(bob, nil).history.items
        #expect(history.map(\.content) == ["first", "second", "third"] && history.map(\.name) == ["Alice", "bob", "Alice"])
    }

    @Test func anImportedMD5PasswordIsCheckedOnceThenReplacedByScrypt() async throws {
        let store = try StoreHarness()
        let legacy = store.directory.appendingPathComponent("chat.db").path
        try LegacyFixture.make(at: legacy)
        _ = try LegacyImport.run(from: legacy, into: try store.sqlite)
        func hash() async throws -> String? {
            try await store.backend.read { tx in try tx.user(email: "alice@example.com")?.passwordHash ?? nil }
        }
        #expect(try await hash()?.hasPrefix("md5$") == true)
        let session = StoreHarness.Session()
        var login = IPCLogin()
        login.email = "alice@example.com"
        #expect(await store.call(session, .login(login), create: true).pleaseLogin.email == "alice@example.com")
        login.password = "wrong"
        #expect(await store.call(session, .login(login)).unauthorised == IPCUnauthorised())
        login.password = "hunter22"
        #expect(await store.call(session, .login(login)).welcome.name == "Alice")
        let upgraded = try #require(try await hash())
        #expect(upgraded.hasPrefix("scrypt$") && PasswordHash.verify("hunter22", against: upgraded))
        #expect(await store.call(session, .login(login)).welcome.name == "Alice")
    }

    @Test func aFileThatIsNotTheOriginalsDatabaseIsRefused() throws {
        let store = try StoreHarness()
        let other = store.directory.appendingPathComponent("other.db").path
        try DatabaseQueue(path: other).write { db in try db.execute(sql: "CREATE TABLE x (y)") }
        #expect { try LegacyImport.run(from: other, into: try store.sqlite) } throws: { ($0 as? ChatError)?.code == .storage }
        #expect { try LegacyImport.run(from: "/nonexistent/chat.db", into: try store.sqlite) } throws: { ($0 as? ChatError)?.code == .storage }
    }
}
