import GRDB

/// The schema as numbered migrations, applied in order at start and by
/// `udpchat-store migrate`. A migration is never edited once released; a
/// change is a new migration.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("0001_initial") { db in
            try db.execute(
                sql: """
                    CREATE TABLE users (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        user_id TEXT NOT NULL UNIQUE,
                        email TEXT NOT NULL UNIQUE,
                        name TEXT NOT NULL,
                        password_hash TEXT,
                        is_admin INTEGER NOT NULL DEFAULT 0,
                        created_at INTEGER NOT NULL,
                        last_active_at INTEGER NOT NULL
                    );
                    CREATE TABLE sessions (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id TEXT NOT NULL UNIQUE,
                        user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
                        wrapped_key BLOB NOT NULL,
                        key_digest BLOB NOT NULL,
                        replay_mark INTEGER NOT NULL DEFAULT 0,
                        created_at INTEGER NOT NULL,
                        last_active_at INTEGER NOT NULL
                    );
                    CREATE INDEX sessions_user ON sessions(user_id);
                    CREATE INDEX sessions_last_active ON sessions(last_active_at);
                    CREATE TABLE rooms (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        room_id TEXT NOT NULL UNIQUE,
                        name TEXT NOT NULL,
                        is_private INTEGER NOT NULL DEFAULT 0,
                        seq INTEGER NOT NULL DEFAULT 0,
                        created_at INTEGER NOT NULL,
                        last_active_at INTEGER NOT NULL,
                        closed_at INTEGER
                    );
                    CREATE UNIQUE INDEX rooms_open_name ON rooms(name) WHERE closed_at IS NULL;
                    CREATE TABLE members (
                        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        is_admin INTEGER NOT NULL DEFAULT 0,
                        joined_at INTEGER NOT NULL,
                        PRIMARY KEY (room_id, user_id)
                    );
                    CREATE INDEX members_user ON members(user_id);
                    CREATE TABLE messages (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        content TEXT NOT NULL,
                        is_announcement INTEGER NOT NULL DEFAULT 0,
                        created_at INTEGER NOT NULL
                    );
                    CREATE INDEX messages_room ON messages(room_id, id);
                    """)
        }
        migrator.registerMigration("0002_ai_jobs") { db in
            try db.execute(
                sql: """
                    CREATE TABLE ai_jobs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        job_id TEXT NOT NULL UNIQUE,
                        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        session_id TEXT NOT NULL,
                        mode TEXT NOT NULL,
                        request BLOB NOT NULL,
                        state TEXT NOT NULL DEFAULT 'queued',
                        created_at INTEGER NOT NULL,
                        deadline_at INTEGER NOT NULL,
                        finished_at INTEGER,
                        message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
                        error TEXT
                    );
                    CREATE INDEX ai_jobs_queued ON ai_jobs(room_id, user_id, mode) WHERE state = 'queued';
                    """)
        }
        migrator.registerMigration("0003_delivery") { db in
            try db.execute(
                sql: """
                    CREATE TABLE room_events (
                        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                        seq INTEGER NOT NULL,
                        body BLOB NOT NULL,
                        created_at INTEGER NOT NULL,
                        PRIMARY KEY (room_id, seq)
                    ) WITHOUT ROWID;
                    CREATE INDEX room_events_age ON room_events(created_at);
                    CREATE TABLE session_cursors (
                        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                        seq INTEGER NOT NULL,
                        PRIMARY KEY (session_id, room_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX session_cursors_room ON session_cursors(room_id);
                    ALTER TABLE sessions ADD COLUMN address TEXT NOT NULL DEFAULT '';
                    ALTER TABLE sessions ADD COLUMN acknowledges INTEGER NOT NULL DEFAULT 0;
                    INSERT INTO session_cursors (session_id, room_id, seq)
                        SELECT s.id, r.id, r.seq FROM sessions s
                        JOIN members m ON m.user_id = s.user_id
                        JOIN rooms r ON r.id = m.room_id AND r.closed_at IS NULL;
                    """)
        }
        migrator.registerMigration("0004_request_results") { db in
            // A write's answer by its session and nonce, so that a request
            // sent again after a timeout is not carried out twice.
            try db.execute(
                sql: """
                    CREATE TABLE request_results (
                        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                        nonce BLOB NOT NULL,
                        response BLOB NOT NULL,
                        created_at INTEGER NOT NULL,
                        PRIMARY KEY (session_id, nonce)
                    ) WITHOUT ROWID;
                    CREATE INDEX request_results_age ON request_results(created_at);
                    """)
        }
        migrator.registerMigration("0005_job_leases") { db in
            // The store process that hands a queued job out, and until when
            // (ms): several stores on one database never hand out the same job.
            try db.execute(
                sql: """
                    ALTER TABLE ai_jobs ADD COLUMN leased_by TEXT NOT NULL DEFAULT '';
                    ALTER TABLE ai_jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
                    """)
        }
        migrator.registerMigration("0006_session_edges") { db in
            // The edge that heard each session last (several edges each
            // deliver to their own).
            try db.execute(sql: "ALTER TABLE sessions ADD COLUMN edge TEXT NOT NULL DEFAULT ''")
        }
        return migrator
    }
}
