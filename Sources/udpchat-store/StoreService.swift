import ChatLog
import ChatWire
import Foundation
import IPC
import IPCMessages
import Logging
import Ops
import Synchronization

/// Turns store RPCs into operations: reads run in parallel on the reader
/// pool, writes go through the group commit, and events go out on PUB only
/// after their transaction committed.
final class StoreService: Sendable {
    let backend: any StorageBackend
    let commit: GroupCommit
    let logger: Logger
    let sessionIdle: Int64
    let aiPolicy: AIPolicy
    let requirePasswords: Bool
    private let limiter: Mutex<AIRateLimiter>
    private let writeLimits: Mutex<WriteLimits>
    private let loginGuard: Mutex<LoginGuard>
    let hashing: ThreadPool
    /// Every time the service reads: rate limits, the login guard, what it stores.
    let clock: any ServiceClock

    /// `afterCommit` receives each committed batch's outcomes, in commit
    /// order: their events to publish and their AI jobs to hand out.
    init(
        backend: any StorageBackend, sessionIdleSeconds: Int, aiPolicy: AIPolicy = AIPolicy(),
        limiter: AIRateLimiter = AIRateLimiter(perUserPerMinute: 10, perRoomPerMinute: 30), writeLimits: WriteLimits = WriteLimits(),
        requirePasswords: Bool = false,
        loginFailuresPerAccount: Int = 5, clock: any ServiceClock = SystemClock(), logger: Logger,
        afterCommit: @escaping @Sendable ([Outcome]) -> Void
    ) {
        self.backend = backend
        self.clock = clock
        self.logger = logger
        self.sessionIdle = Int64(sessionIdleSeconds)
        self.aiPolicy = aiPolicy
        self.requirePasswords = requirePasswords
        self.limiter = Mutex(limiter)
        self.writeLimits = Mutex(writeLimits)
        self.loginGuard = Mutex(LoginGuard(limit: loginFailuresPerAccount, window: 15 * 60 * 1_000_000_000))
        // Implementation constants: two hashing threads (scrypt is 35 ms and 16 MiB each) and
        // a queue of 64 logins; beyond that the server answers that it is busy.
        self.hashing = ThreadPool(name: "udpchat-hashing", threads: 2, maximumWaiting: 64)
        self.commit = GroupCommit(backend: backend, clock: clock, afterCommit: afterCommit)
    }

    /// The request being handled, for the writes it makes (its nonce and deadline).
    @TaskLocal static var context: IPCSessionContext?
    private var currentContext: IPCSessionContext? { Self.context }

    func handle(_ request: IPCStoreRequest) async -> IPCStoreResponse {
        let started = clock.monotonic()
        let response = await Self.$context.withValue(request.session) { await perform(request) }
        StoreMetrics.request(request.methodName, nanoseconds: clock.monotonic() &- started)
        return response
    }

    /// Whether the database answers a read (for `/readyz`).
    func databaseResponds() async -> Bool {
        (try? await backend.read { tx in try tx.session(id: "") == nil }) ?? false
    }

    private func perform(_ request: IPCStoreRequest) async -> IPCStoreResponse {
        let now = clock.wallSeconds()
        let context = request.session
        let ops = Operations(now: now, sessionId: context.sessionID)
        // A session's first authenticated packet creates its row, and any
        // packet may carry its replay mark: such a request must write.
        var setup: (@Sendable (any StoreTransaction) throws -> Void)? = nil
        if !context.wrappedKey.isEmpty || context.replayMark > 0 || !context.address.isEmpty {
            setup = { @Sendable tx in try ops.ensureSession(tx, context) }
        }

        switch request.op {
        case .loadSession(let load):
            return await read(ops) { try Operations.loadSession($0, id: load.sessionID) }
        case .touchSessions(let touch):
            return await write(ops, setup: nil) { try Operations.touchSessions($0, touch) }
        case .loadSessions(let load):
            return await read(ops) { try Operations.loadSessions($0, load) }
        case .readRoomEvents(let events):
            return await read(ops) { try Operations.readRoomEvents($0, events) }
        case .ensure:
            return await write(ops, setup: setup) { _ in .respond { $0.done = IPCDone() } }
        case .login(let login):
            return await self.login(login, source: SourceAddress.key(ofAddress: context.address), ops: ops, setup: setup)
        case .logout:
            return await write(ops, setup: setup) { try ops.logout($0) }
        case .status:
            return await readOrWrite(ops, setup: setup) { try ops.status($0) }
        case .mergeSession(let merge):
            return await write(ops, setup: setup) {
                try ops.mergeSession($0, oldSessionId: merge.oldSessionID, oldKeyDigest: [UInt8](merge.oldKeyDigest))
            }
        case .listRooms:
            return await readOrWrite(ops, setup: setup) { try ops.listRooms($0) }
        case .createRoom(let create):
            return await write(ops, setup: setup) { [self] in
                try ops.createRoom($0, name: create.name) { user in
                    writeLimits.withLock { $0.createRoom(user: user.userId, now: clock.monotonic()) }
                }
            }
        case .joinRoom(let join):
            return await write(ops, setup: setup) { [self] in
                try ops.joinRoom($0, roomId: join.roomID) { user in
                    writeLimits.withLock { $0.changeMembership(user: user.userId, now: clock.monotonic()) }
                }
            }
        case .leaveRoom(let leave):
            return await write(ops, setup: setup) { [self] in
                try ops.leaveRoom($0, roomId: leave.roomID) { user in
                    writeLimits.withLock { $0.changeMembership(user: user.userId, now: clock.monotonic()) }
                }
            }
        case .postMessage(let post):
            return await write(ops, setup: setup) { try ops.postMessage($0, roomId: post.roomID, content: post.content) }
        case .listMessages(let list):
            let limit = list.limit == 0 ? WireSpec.historyLimit : min(Int(list.limit), WireSpec.historyLimit)
            let roomId = list.hasRoomID ? list.roomID : nil
            return await readOrWrite(ops, setup: setup) { try ops.listMessages($0, roomId: roomId, limit: limit) }
        case .listMembers(let list):
            let roomId = list.hasRoomID ? list.roomID : nil
            return await readOrWrite(ops, setup: setup) { try ops.listMembers($0, roomId: roomId) }
        case .requestAi(let ai):
            let policy = aiPolicy
            let nowMs = clock.wallMilliseconds()
            return await write(ops, setup: setup) { [self] tx in
                try ops.requestAI(tx, roomId: ai.roomID, content: ai.content, policy: policy, nowMs: nowMs) { user, room in
                    limiter.withLock { $0.admit(user: user.userId, room: room.roomId, now: clock.monotonic()) }
                }
            }
        case .ping:
            return await databaseResponds()
                ? Outcome.respond { $0.done = IPCDone() }.response
                : Outcome.error(ProtocolText.packetFailurePrefix + "the database does not answer").response
        case nil:
            return Self.beforeTheOperation(Outcome.error(ProtocolText.packetFailurePrefix + "the request names no operation").response)
        }
    }

    /// How long a write's answer is kept for a repeat of it: clients send a
    /// request again within seconds; ten minutes leaves room to spare.
    static let requestResultRetentionSeconds: Int64 = 600

    /// How long ended AI jobs are kept (for an operator to look into one).
    static let endedJobRetentionMs: Int64 = 7 * 24 * 3600 * 1000

    /// How long room events are kept in the log beyond the session idle
    /// time: a cursor is never older than its session, and sessions that
    /// idle longer are deleted, so a day covers every session with room to
    /// spare (the messages themselves stay in history for good).
    static let roomEventRetentionSeconds: Int64 = 24 * 3600

    /// Deletes sessions idle longer than the setting, room events older than
    /// the log keeps them, and AI jobs that ended more than a week ago;
    /// returns how many sessions.
    func expireIdleSessions() async -> Int {
        let now = clock.wallSeconds()
        let cutoff = now - sessionIdle
        let eventCutoff = now - sessionIdle - Self.roomEventRetentionSeconds
        let resultCutoff = now - Self.requestResultRetentionSeconds
        let jobCutoff = Int64(now * 1000) - Self.endedJobRetentionMs
        let result = await commit.submit(
            GroupCommit.Write(setup: nil) { tx in
                var outcome = Outcome.respond { $0.done = IPCDone() }
                outcome.affectedRows = try tx.deleteSessions(lastActiveBefore: cutoff)
                _ = try tx.deleteRoomEvents(before: eventCutoff)
                _ = try tx.deleteRequestResults(before: resultCutoff)
                _ = try tx.deleteEndedJobs(before: jobCutoff)
                return outcome
            })
        switch result {
        case .success(let outcome): return outcome.affectedRows
        case .failure(let error):
            logger.error("expiring idle sessions failed", metadata: .fields(.error(error)))
            return 0
        }
    }

    /// LOGIN: the attempt counted against its account and source first, then
    /// the password on the hashing pool, then the transaction. An unknown
    /// account's password is hashed against a dummy, so that the time taken
    /// does not tell which accounts exist.
    private func login(_ login: IPCLogin, source: String, ops: Operations, setup: (@Sendable (any StoreTransaction) throws -> Void)?)
        async -> IPCStoreResponse
    {
        let email = login.email
        let password = login.hasPassword ? login.password : nil
        let key = LoginGuard.Key(account: email, source: source)
        if let wait = loginGuard.withLock({ $0.begin(key, now: clock.monotonic()) }) {
            return Self.beforeTheOperation(Outcome.error("Too many failed logins for this account; try again in \(wait) s.").response)
        }
        var check = PasswordCheck.notChecked
        if let password, !password.isEmpty {
            let stored = (try? await backend.read({ tx in try tx.user(email: email)?.passwordHash })) ?? nil
            let known = stored.map { !$0.isEmpty } ?? false
            let target = known ? stored! : Self.dummyHash
            let result = await hashing.run { () -> PasswordCheck in
                guard PasswordHash.verify(password, against: target) else { return known ? .mismatched : .notChecked }
                guard known else { return .notChecked }
                return .matched(stored: target, upgrade: PasswordHash.isLegacy(target) ? try? PasswordHash.make(password) : nil)
            }
            guard let result else {
                loginGuard.withLock { $0.finish(key, failed: nil, now: clock.monotonic()) }
                return Self.beforeTheOperation(Outcome.error("The server is busy; try again in a moment.").response)
            }
            check = result
        }
        let requirePasswords = self.requirePasswords
        let checked = check
        let response = await write(ops, setup: setup) {
            try ops.login($0, email: email, password: password, check: checked, requirePasswords: requirePasswords)
        }
        let failed: Bool? =
            switch response.result {
            case .unauthorised?: true
            case .welcome?: false
            default: nil
            }
        loginGuard.withLock { $0.finish(key, failed: failed, now: clock.monotonic()) }
        return response
    }

    /// What an unknown account's password is hashed against (never matched:
    /// its password is random and forgotten).
    private static let dummyHash: String = (try? PasswordHash.make(SecureRandom.identifier())) ?? ""

    /// Wraps an operation: a refusal becomes its error response, and the
    /// response says who the session's user is afterwards.
    private func withSessionUser(
        _ ops: Operations, _ body: @escaping @Sendable (any StoreTransaction) throws -> Outcome
    ) -> @Sendable (any StoreTransaction) throws -> Outcome {
        { tx in
            var outcome: Outcome
            do {
                outcome = try body(tx)
            } catch let refusal as ChatError where refusal.code == .refused {
                outcome = .error(refusal.message)
            }
            if outcome.response.sessionUserID.isEmpty, let user = try ops.caller(tx).user {
                outcome.response.sessionUserID = user.userId
            }
            return outcome
        }
    }

    private func read(_ ops: Operations, _ body: @escaping @Sendable (any StoreTransaction) throws -> Outcome) async
        -> IPCStoreResponse
    {
        do {
            return try await backend.read(withSessionUser(ops, body)).response
        } catch {
            return failure(error, ops)
        }
    }

    /// Runs a write through the group commit. One carrying the client's
    /// nonce runs once per session and nonce: a repeat (the client asking
    /// again after the edge gave up waiting) gets the first answer and
    /// changes nothing. One carrying a deadline is not carried out if it has
    /// not started by then (its caller stopped waiting); if an earlier copy
    /// of it was, that copy's answer is given. So the edge's last question,
    /// sent past the deadline, learns for certain whether the write was done.
    private func write(
        _ ops: Operations, setup: (@Sendable (any StoreTransaction) throws -> Void)?,
        _ body: @escaping @Sendable (any StoreTransaction) throws -> Outcome
    ) async -> IPCStoreResponse {
        let context = currentContext
        let nonce = [UInt8](context?.requestNonce ?? Data())
        let sessionId = ops.sessionId
        let now = ops.now
        var operation = withSessionUser(ops, body)
        var recorded: (@Sendable (any StoreTransaction) throws -> Outcome?)? = nil
        if !nonce.isEmpty {
            let run = operation
            let lookUp: @Sendable (any StoreTransaction) throws -> Outcome? = { tx in
                try tx.requestResult(session: sessionId, nonce: nonce)
                    .flatMap { try? IPCStoreResponse(serializedBytes: $0) }
                    .map { Outcome(response: $0) }
            }
            recorded = lookUp
            operation = { @Sendable tx in
                if let outcome = try lookUp(tx) { return outcome }
                let outcome = try run(tx)
                if !outcome.isRefusal {
                    try tx.recordRequestResult(session: sessionId, nonce: nonce, response: try outcome.response.serializedBytes(), now: now)
                }
                return outcome
            }
        }
        let deadline = (context?.deadlineUnixMs ?? 0) > 0 ? context?.deadlineUnixMs : nil
        switch await commit.submit(GroupCommit.Write(setup: setup, operation: operation, deadlineUnixMs: deadline, recorded: recorded)) {
        case .success(let outcome): return outcome.response
        case .failure(let error as GroupCommit.Expired):
            StoreMetrics.expired()
            logger.info("request refused", metadata: .fields(.session(ops.sessionId), .error(error)))
            return Self.beforeTheOperation(Outcome.error(ProtocolText.packetFailurePrefix + "the store did not answer in time").response)
        case .failure(let error): return failure(error, ops)
        }
    }

    private func readOrWrite(
        _ ops: Operations, setup: (@Sendable (any StoreTransaction) throws -> Void)?,
        _ body: @escaping @Sendable (any StoreTransaction) throws -> Outcome
    ) async -> IPCStoreResponse {
        setup == nil ? await read(ops, body) : await write(ops, setup: setup, body)
    }

    private func failure(_ error: any Error, _ ops: Operations) -> IPCStoreResponse {
        logger.error("storage failure", metadata: .fields(.session(ops.sessionId), .error(error)))
        return Self.beforeTheOperation(Outcome.error(ProtocolText.packetFailurePrefix + "the store could not complete the request").response)
    }

    /// An error that says nothing of the session's user (the operation did not run).
    private static func beforeTheOperation(_ response: IPCStoreResponse) -> IPCStoreResponse {
        var response = response
        response.userUnknown = true
        return response
    }
}
