/// The schema on PostgreSQL: the same numbered migrations as ``Schema``
/// (SQLite), each in PostgreSQL's words, applied in order and recorded in
/// `schema_migrations`. A migration is never edited once released; a change
/// is a new migration here and in ``Schema`` under the same name.
enum PostgresSchema {
    static let migrations: [(name: String, sql: String)] = [
        (
            "0001_initial",
            """
            CREATE TABLE users (
                id BIGSERIAL PRIMARY KEY,
                user_id TEXT NOT NULL UNIQUE,
                email TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                password_hash TEXT,
                is_admin BOOLEAN NOT NULL DEFAULT false,
                created_at BIGINT NOT NULL,
                last_active_at BIGINT NOT NULL
            );
            CREATE TABLE sessions (
                id BIGSERIAL PRIMARY KEY,
                session_id TEXT NOT NULL UNIQUE,
                user_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
                wrapped_key BYTEA NOT NULL,
                key_digest BYTEA NOT NULL,
                replay_mark BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                last_active_at BIGINT NOT NULL
            );
            CREATE INDEX sessions_user ON sessions(user_id);
            CREATE INDEX sessions_last_active ON sessions(last_active_at);
            CREATE TABLE rooms (
                id BIGSERIAL PRIMARY KEY,
                room_id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                is_private BOOLEAN NOT NULL DEFAULT false,
                seq BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                last_active_at BIGINT NOT NULL,
                closed_at BIGINT
            );
            CREATE UNIQUE INDEX rooms_open_name ON rooms(name) WHERE closed_at IS NULL;
            CREATE TABLE members (
                room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                is_admin BOOLEAN NOT NULL DEFAULT false,
                joined_at BIGINT NOT NULL,
                PRIMARY KEY (room_id, user_id)
            );
            CREATE INDEX members_user ON members(user_id);
            CREATE TABLE messages (
                id BIGSERIAL PRIMARY KEY,
                room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                content TEXT NOT NULL,
                is_announcement BOOLEAN NOT NULL DEFAULT false,
                created_at BIGINT NOT NULL
            );
            CREATE INDEX messages_room ON messages(room_id, id);
            """
        ),
        (
            "0002_ai_jobs",
            """
            CREATE TABLE ai_jobs (
                id BIGSERIAL PRIMARY KEY,
                job_id TEXT NOT NULL UNIQUE,
                room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                session_id TEXT NOT NULL,
                mode TEXT NOT NULL,
                request BYTEA NOT NULL,
                state TEXT NOT NULL DEFAULT 'queued',
                created_at BIGINT NOT NULL,
                deadline_at BIGINT NOT NULL,
                finished_at BIGINT,
                message_id BIGINT REFERENCES messages(id) ON DELETE SET NULL,
                error TEXT
            );
            CREATE INDEX ai_jobs_queued ON ai_jobs(room_id, user_id, mode) WHERE state = 'queued';
            """
        ),
        (
            "0003_delivery",
            """
            CREATE TABLE room_events (
                room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                seq BIGINT NOT NULL,
                body BYTEA NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (room_id, seq)
            );
            CREATE INDEX room_events_age ON room_events(created_at);
            CREATE TABLE session_cursors (
                session_id BIGINT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                seq BIGINT NOT NULL,
                PRIMARY KEY (session_id, room_id)
            );
            CREATE INDEX session_cursors_room ON session_cursors(room_id);
            ALTER TABLE sessions ADD COLUMN address TEXT NOT NULL DEFAULT '';
            ALTER TABLE sessions ADD COLUMN acknowledges BOOLEAN NOT NULL DEFAULT false;
            INSERT INTO session_cursors (session_id, room_id, seq)
                SELECT s.id, r.id, r.seq FROM sessions s
                JOIN members m ON m.user_id = s.user_id
                JOIN rooms r ON r.id = m.room_id AND r.closed_at IS NULL;
            """
        ),
        (
            "0004_request_results",
            """
            CREATE TABLE request_results (
                session_id BIGINT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                nonce BYTEA NOT NULL,
                response BYTEA NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (session_id, nonce)
            );
            CREATE INDEX request_results_age ON request_results(created_at);
            """
        ),
        (
            "0005_job_leases",
            """
            ALTER TABLE ai_jobs ADD COLUMN leased_by TEXT NOT NULL DEFAULT '';
            ALTER TABLE ai_jobs ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
            """
        ),
        ("0006_session_edges", "ALTER TABLE sessions ADD COLUMN edge TEXT NOT NULL DEFAULT ''"),
    ]

    /// Tables in the order a copy fills them (each after those it refers to).
    static let tables = [
        "users", "sessions", "rooms", "members", "messages", "ai_jobs", "room_events", "session_cursors", "request_results",
    ]
}
