import ChatWire
import Configuration

/// One documented setting: an environment variable (also read from the
/// environment file). `.env.sample` and the README list every one; a test
/// keeps them in step with this catalogue.
public struct Setting: Sendable, Hashable {
    public let name: String
    /// The default as documentation shows it.
    public let defaultText: String
    public let summary: String
    /// For a number or a flag: its default and the values it may take,
    /// spelled here once and used by every program that reads it.
    public let rule: Rule?

    public enum Rule: Sendable, Hashable {
        case integer(default: Int, range: ClosedRange<Int>)
        case decimal(default: Double, range: ClosedRange<Double>)
        case flag(default: Bool)
    }

    /// A text setting (a path, an endpoint, a name); its default is the reader's.
    public init(_ name: String, default defaultText: String, _ summary: String) {
        self.init(name, rule: nil, shown: defaultText, summary)
    }

    /// A whole number from `range`, `value` when unset.
    public init(_ name: String, integer value: Int, in range: ClosedRange<Int>, shown: String? = nil, _ summary: String) {
        self.init(name, rule: .integer(default: value, range: range), shown: shown ?? String(value), summary)
    }

    /// A number from `range`, `value` when unset.
    public init(_ name: String, decimal value: Double, in range: ClosedRange<Double>, _ summary: String) {
        self.init(name, rule: .decimal(default: value, range: range), shown: String(value), summary)
    }

    /// True or false, `value` when unset.
    public init(_ name: String, flag value: Bool, _ summary: String) {
        self.init(name, rule: .flag(default: value), shown: String(value), summary)
    }

    private init(_ name: String, rule: Rule?, shown: String, _ summary: String) {
        self.name = name
        self.rule = rule
        self.defaultText = shown
        self.summary = summary
    }

    /// The swift-configuration key that maps to this variable name.
    var key: ConfigKey { ConfigKey(name.lowercased().split(separator: "_").map(String.init)) }
}

extension Setting {
    // Files and endpoints (every program)
    public static let envFile = Setting(
        "UDPCHAT_ENV_FILE", default: ".env", "Environment file read by every program; variables set in the environment win.")
    public static let dataDir = Setting("DATA_DIR", default: "./data", "Directory for the database, keys and sockets.")
    public static let runDir = Setting(
        "RUN_DIR", default: "$DATA_DIR/run", "Directory of the ipc:// sockets (paths must stay under 108 bytes).")
    public static let keysDir = Setting("KEYS_DIR", default: "$DATA_DIR/keys", "Directory of the identity key and key-encryption key.")
    public static let dbPath = Setting("DB_PATH", default: "$DATA_DIR/udpchat.db", "SQLite database file (when DATABASE_URL is unset).")
    public static let databaseURL = Setting(
        "DATABASE_URL", default: "",
        "PostgreSQL instead of SQLite: postgres://USER@HOST:PORT/DATABASE (?sslmode=disable, prefer, require or verify-full); no password in it."
    )
    public static let databasePasswordFile = Setting(
        "DATABASE_PASSWORD_FILE", default: "", "File holding the PostgreSQL password (its first line), for DATABASE_URL.")
    public static let keysEndpoint = Setting(
        "KEYS_ENDPOINT", default: "ipc://$RUN_DIR/keys.sock", "Where udpchat-keys serves RPC (ipc:// or tcp://host:port).")
    public static let storeEndpoint = Setting(
        "STORE_ENDPOINT", default: "ipc://$RUN_DIR/store.sock",
        "Where udpchat-store serves RPC; with several stores (PostgreSQL), a comma-separated list the edge spreads requests over.")
    public static let eventsEndpoint = Setting(
        "EVENTS_ENDPOINT", default: "ipc://$RUN_DIR/events.sock",
        "Where udpchat-store publishes events; with several stores, a comma-separated list the edge subscribes to.")
    public static let keysBind = Setting(
        "KEYS_BIND", default: "$KEYS_ENDPOINT",
        "Address udpchat-keys binds, when it differs from the one clients connect to (tcp://0.0.0.0:PORT).")
    public static let storeBind = Setting(
        "STORE_BIND", default: "$STORE_ENDPOINT", "Address udpchat-store binds for RPC (required when STORE_ENDPOINT is a list).")
    public static let eventsBind = Setting(
        "EVENTS_BIND", default: "$EVENTS_ENDPOINT", "Address udpchat-store binds for events (required when EVENTS_ENDPOINT is a list).")
    public static let jobsEndpoint = Setting(
        "JOBS_ENDPOINT", default: "ipc://$RUN_DIR/jobs.sock", "Where udpchat-store hands AI jobs to udpchat-ai workers.")
    public static let jobsBind = Setting("JOBS_BIND", default: "$JOBS_ENDPOINT", "Address udpchat-store binds for AI workers.")
    public static let curveDir = Setting(
        "CURVE_DIR", default: "$KEYS_DIR/curve",
        "CURVE key pairs for tcp:// endpoints: ROLE.key (a program's own secret key) and ROLE.pub (its peers' public keys).")
    public static let rpcTimeout = Setting(
        "RPC_TIMEOUT_MS", integer: 3000, in: 50...600_000, "Deadline of each call between programs, in milliseconds.")
    public static let logLevel = Setting("LOG_LEVEL", default: "info", "trace, debug, info, notice, warning, error or critical.")
    public static let debug = Setting("DEBUG", flag: false, "Original name: true, 1, t, yes or y (any case) sets LOG_LEVEL to debug.")

    // Operations (every program)
    public static let metricsIP = Setting(
        "METRICS_IP", default: "127.0.0.1", "Address of every program's HTTP endpoint for /metrics, /healthz and /readyz.")
    public static let keysMetricsPort = Setting(
        "KEYS_METRICS_PORT", integer: 9101, in: 0...65535, "udpchat-keys' metrics and health port (0: any free one).")
    public static let storeMetricsPort = Setting(
        "STORE_METRICS_PORT", integer: 9102, in: 0...65535, "udpchat-store's metrics and health port.")
    public static let edgeMetricsPort = Setting(
        "EDGE_METRICS_PORT", integer: 9103, in: 0...65535, shown: "9103 (METRICS_PORT)",
        "udpchat-edge's metrics and health port; the original's METRICS_PORT also sets it.")
    public static let metricsPort = Setting(
        "METRICS_PORT", integer: 9103, in: 0...65535, shown: "",
        "Original name: the edge's metrics port, when EDGE_METRICS_PORT is not set.")
    public static let aiMetricsPort = Setting(
        "AI_METRICS_PORT", integer: 9104, in: 0...65535,
        "udpchat-ai's metrics and health port (--metrics-port; the systemd template uses its instance name).")

    // Edge
    public static let serverIP = Setting(
        "SERVER_IP", default: "127.0.0.1", "UDP address the edge binds (IPv4 or IPv6; 0.0.0.0 or :: for all).")
    public static let serverPort = Setting(
        "SERVER_PORT", integer: WireSpec.defaultPort, in: 0...65535, "UDP port; 0 picks a free one, printed in the ready line.")
    public static let edgeID = Setting(
        "EDGE_ID", default: "",
        "This edge's name when several edges serve one store tier (letters, digits, '-', '_', '.'; %H stands for the host name): each delivers to the sessions it heard last."
    )
    public static let reusePort = Setting(
        "REUSE_PORT", flag: false,
        "Bind the UDP port with SO_REUSEPORT, so that several edges on one host share it (the kernel spreads clients).")
    public static let bufferSize = Setting(
        "BUFFER_SIZE", integer: WireSpec.defaultBufferSize, in: 8192...WireSpec.maxDatagram,
        "Largest datagram accepted, in bytes (8192 to 65507; the original's receive buffer).")
    public static let retryMode = Setting(
        "RETRY_MODE", default: "adaptive",
        "adaptive: retry after the measured RTO, doubling, until RETRY_BUDGET_MS; fixed: the original's timing.")
    public static let retryBudget = Setting(
        "RETRY_BUDGET_MS", integer: 60_000, in: 1_000...3_600_000,
        "Adaptive mode: how long a copy is retried before its session is marked unreachable.")
    public static let retryInterval = Setting(
        "RETRY_INTERVAL_MS", integer: 2000, in: 50...600_000, "Fixed mode: time between transmissions of an unacknowledged broadcast copy.")
    public static let retryTransmissions = Setting(
        "RETRY_TRANSMISSIONS", integer: WireSpec.transmissions, in: 1...100,
        "Fixed mode: transmissions of a broadcast copy in all, the first included.")
    public static let sessionIdle = Setting(
        "SESSION_IDLE_SECONDS", integer: 600, in: 60...31_536_000, "A session silent this long expires (edge memory and store row).")
    public static let broadcastIdle = Setting(
        "BROADCAST_IDLE_SECONDS", integer: 90, in: 60...31_536_000,
        "A session silent this long receives no broadcasts until it speaks again (at least 60).")
    public static let messagesPerUser = Setting(
        "MESSAGES_PER_USER", integer: 20, in: 1...1_000_000,
        "Chat messages per second one user may send (twice that at once); more get an error, so a sender never outruns delivery.")
    public static let maxPendingHandshakes = Setting(
        "MAX_PENDING_HANDSHAKES", integer: 4096, in: 16...10_000_000,
        "Handshakes kept in memory that have not yet sent an authenticated packet.")
    public static let sessionsPerSource = Setting(
        "SESSIONS_PER_SOURCE", integer: 500, in: 1...10_000_000,
        "Sessions one source (an IPv4 address, an IPv6 /64) may hold; its next handshake gets an error.")
    public static let maxSessions = Setting(
        "MAX_SESSIONS", integer: 100_000, in: 1...100_000_000, "Sessions the edge holds in all; new handshakes get an error beyond.")
    public static let maxAnonymousSessions = Setting(
        "MAX_ANONYMOUS_SESSIONS", integer: 20_000, in: 1...100_000_000,
        "Sessions not logged in the edge holds; new handshakes get an error beyond.")
    public static let edgeMemoryLimit = Setting(
        "EDGE_MEMORY_LIMIT_MB", integer: 2048, in: 0...1_048_576, "Resident memory above which the edge refuses new sessions (0: no limit)."
    )

    public static let handshakesPerSource = Setting(
        "HANDSHAKES_PER_SOURCE", integer: 5, in: 1...100_000,
        "Handshakes per second one IP address may start (twice that at once); more are dropped.")
    public static let errorsPerSource = Setting(
        "ERRORS_PER_SOURCE", integer: 20, in: 1...100_000,
        "Error replies and session lookups per second for one IP address that proved nothing.")
    public static let rateLimitExempt = Setting(
        "RATE_LIMIT_EXEMPT", default: "", "IP addresses the per-source limits do not apply to (comma-separated; a WebSocket bridge).")

    // Keys
    public static let keyBits = Setting(
        "KEY_BITS", integer: 2048, in: 2048...4096, "RSA size for `udpchat-keys generate` (2048, 3072 or 4096).")
    public static let keysThreads = Setting(
        "KEYS_THREADS", integer: 0, in: 0...256, shown: "0 (one per core)",
        "Threads udpchat-keys signs handshakes on; 0: one per core.")
    public static let rsaLibrary = Setting(
        "RSA_LIBRARY", default: "openssl",
        "Which library makes udpchat-keys' handshake signatures: openssl (the system's libcrypto, about twice as fast for RSA-2048 here) or swift-crypto."
    )

    // Accounts (udpchat-store)
    public static let requirePasswords = Setting(
        "REQUIRE_PASSWORDS", flag: false,
        "true: an email alone no longer logs in or creates an account (udpchat-store user set-password).")
    public static let loginFailuresPerAccount = Setting(
        "LOGIN_FAILURES_PER_ACCOUNT", integer: 5, in: 1...1_000,
        "Wrong passwords an account takes from one address (IPv6: its /64) in 15 minutes before that address waits out the rest.")
    public static let loginsPerSource = Setting(
        "LOGINS_PER_SOURCE", integer: 30, in: 1...100_000,
        "LOGIN requests per minute from one IP address (the edge answers the rest with an error).")

    public static let roomsPerUser = Setting(
        "ROOMS_PER_USER_PER_MINUTE", integer: 10, in: 1...100_000,
        "Rooms one user may create per minute (each new room's list goes to every session).")
    public static let joinsPerUser = Setting(
        "JOINS_PER_USER_PER_MINUTE", integer: 120, in: 1...100_000,
        "Times one user may join or leave a room per minute (each goes to every member).")

    // AI jobs (udpchat-store)
    public static let aiJobTimeout = Setting(
        "AI_JOB_TIMEOUT_MS", integer: 120_000, in: 1_000...3_600_000,
        "How long an AI request may wait for a worker and run, in all, before it fails.")
    public static let aiLease = Setting(
        "AI_LEASE_MS", integer: 10_000, in: 100...600_000,
        "A job sent to a worker that does not confirm it within this time goes to another.")
    public static let aiHeartbeat = Setting(
        "AI_HEARTBEAT_MS", integer: 1000, in: 50...60_000, "Heartbeat between store and workers; three missed ones mean the peer is gone.")
    public static let aiContextMessages = Setting(
        "AI_CONTEXT_MESSAGES", integer: 100, in: 0...WireSpec.historyLimit, "Most recent room messages given to the model as context.")
    public static let aiContextBytes = Setting(
        "AI_CONTEXT_BYTES", integer: 16_384, in: 0...1_048_576, "Most bytes of context text; older messages are left out first.")
    public static let aiUserRate = Setting(
        "AI_USER_RATE_PER_MINUTE", integer: 10, in: 1...100_000, "AI requests one user may make per minute.")
    public static let aiRoomRate = Setting(
        "AI_ROOM_RATE_PER_MINUTE", integer: 30, in: 1...100_000, "AI requests one room may have per minute.")

    // AI worker (udpchat-ai); the original's names first
    public static let aiMode = Setting(
        "AI_MODE", default: "ollama",
        "ollama, or gpt (OpenAI, any OpenAI-compatible server, or Azure OpenAI when its two variables are set).")
    public static let openAIKey = Setting(
        "OPENAI_API_KEY", default: "", "API key for OpenAI (and for Azure unless AZURE_OPENAI_API_KEY is set).")
    public static let openAIBaseURL = Setting(
        "OPENAI_BASE_URL", default: "https://api.openai.com/v1", "Base URL of an OpenAI-compatible API (…/v1).")
    public static let azureEndpoint = Setting(
        "AZURE_OPENAI_ENDPOINT", default: "", "Azure OpenAI resource URL; with AZURE_OPENAI_DEPLOYMENT it selects Azure in gpt mode.")
    public static let azureDeployment = Setting("AZURE_OPENAI_DEPLOYMENT", default: "", "Azure OpenAI deployment name (used as the model).")
    public static let azureAPIVersion = Setting("AZURE_OPENAI_API_VERSION", default: "2024-05-01-preview", "Azure OpenAI api-version.")
    public static let azureAPIKey = Setting("AZURE_OPENAI_API_KEY", default: "", "Azure key, when it differs from OPENAI_API_KEY.")
    public static let ollamaHost = Setting("OLLAMA_HOST", default: "http://127.0.0.1:11434", "Ollama server (host:port or URL).")
    public static let aiModel = Setting("AI_MODEL", default: "gpt-4o-mini / mistral", "Model name; the default depends on AI_MODE.")
    public static let aiTemperature = Setting("AI_TEMPERATURE", decimal: 0.9, in: 0...2, "Sampling temperature.")
    public static let aiMaxTokens = Setting("AI_MAX_TOKENS", integer: 300, in: 1...1_000_000, "Most tokens in a reply.")
    public static let aiTopP = Setting("AI_TOP_P", decimal: 0.95, in: 0...1, "Nucleus sampling.")
    public static let aiFrequencyPenalty = Setting("AI_FREQUENCY_PENALTY", decimal: 0.3, in: -2...2, "Frequency penalty.")
    public static let aiPresencePenalty = Setting("AI_PRESENCE_PENALTY", decimal: 0.2, in: -2...2, "Presence penalty.")
    public static let aiFirstTokenTimeout = Setting(
        "AI_FIRST_TOKEN_TIMEOUT_MS", integer: 20_000, in: 100...3_600_000, "A model that sends nothing for this long fails the job.")
    public static let aiTimeout = Setting(
        "AI_TIMEOUT_MS", integer: 60_000, in: 100...3_600_000, "A model reply taking longer than this fails the job.")
    public static let aiConcurrency = Setting(
        "AI_CONCURRENCY", integer: 4, in: 1...1024, "Jobs one udpchat-ai process runs at once (--concurrency).")

    // Web bridge (udpchat-web); the original connector's names first
    public static let wsPort = Setting(
        "WS_PORT", integer: 8000, in: 0...65535, "udpchat-web's HTTP port: the page, and WebSockets at /ws (0: any free one).")
    public static let webBind = Setting(
        "WEB_BIND", default: "127.0.0.1", "Address udpchat-web listens on (0.0.0.0 or :: for all; off this host, set WEB_TLS_CERT).")
    public static let udpServerHost = Setting("UDP_SERVER_HOST", default: "127.0.0.1", "The edge udpchat-web relays to.")
    public static let udpServerPort = Setting("UDP_SERVER_PORT", integer: WireSpec.defaultPort, in: 1...65535, "The edge's UDP port.")
    public static let inactivityTimeout = Setting(
        "INACTIVITY_TIMEOUT_MS", integer: 600_000, in: 1_000...86_400_000,
        "A WebSocket with nothing relayed either way for this long is closed, with its UDP socket.")
    public static let webTLSCert = Setting(
        "WEB_TLS_CERT", default: "",
        "PEM certificate chain: udpchat-web serves https:// and wss:// (browsers allow WebCrypto only there, or on localhost).")
    public static let webTLSKey = Setting("WEB_TLS_KEY", default: "", "PEM private key of WEB_TLS_CERT.")
    public static let webAllowedOrigins = Setting(
        "WEB_ALLOWED_ORIGINS", default: "",
        "Origins whose pages may open WebSockets (comma-separated, as https://chat.example.com; * for any). Besides them: the page's own origin when reached by IP address or localhost, and clients that send none."
    )
    public static let webMaxConnections = Setting(
        "WEB_MAX_CONNECTIONS", integer: 1024, in: 1...1_000_000,
        "WebSockets open at once; one more is closed with code 1013 (try again later).")
    public static let webMessagesPerSecond = Setting(
        "WEB_MESSAGES_PER_SECOND", integer: 200, in: 1...1_000_000,
        "Frames one WebSocket may send per second (twice that at once), its ACKs included; a faster client is closed with code 1008.")
    public static let webMetricsPort = Setting("WEB_METRICS_PORT", integer: 9110, in: 0...65535, "udpchat-web's metrics and health port.")

    /// Every setting, in documentation order.
    public static let all: [Setting] = [
        envFile, dataDir, runDir, keysDir, dbPath, databaseURL, databasePasswordFile, metricsIP, keysMetricsPort, storeMetricsPort,
        edgeMetricsPort, metricsPort,
        aiMetricsPort, keysEndpoint, storeEndpoint, eventsEndpoint, keysBind, storeBind,
        eventsBind, jobsEndpoint, jobsBind, curveDir, rpcTimeout, logLevel, debug, serverIP, serverPort, edgeID, reusePort, bufferSize,
        retryMode, retryBudget,
        retryInterval, retryTransmissions, sessionIdle, broadcastIdle, messagesPerUser, maxPendingHandshakes, sessionsPerSource,
        maxSessions, maxAnonymousSessions, edgeMemoryLimit, handshakesPerSource, errorsPerSource,
        rateLimitExempt, keyBits, keysThreads, rsaLibrary, requirePasswords, loginFailuresPerAccount, loginsPerSource, roomsPerUser,
        joinsPerUser, aiJobTimeout, aiLease, aiHeartbeat,
        aiContextMessages, aiContextBytes, aiUserRate, aiRoomRate, aiMode, openAIKey, openAIBaseURL, azureEndpoint,
        azureDeployment, azureAPIVersion, azureAPIKey, ollamaHost, aiModel, aiTemperature, aiMaxTokens, aiTopP,
        aiFrequencyPenalty, aiPresencePenalty, aiFirstTokenTimeout, aiTimeout, aiConcurrency, wsPort, webBind, udpServerHost, udpServerPort,
        inactivityTimeout, webTLSCert, webTLSKey, webAllowedOrigins, webMaxConnections, webMessagesPerSecond, webMetricsPort,
    ]
}
