import ChatWire
import Crypto
import DequeModule
import Foundation
import IPCMessages
import Logging

/// The edge's protocol engine (docs/architecture.md, "The edge as a machine and
/// its rim"): it takes events (a datagram, an answer from udpchat-keys or
/// udpchat-store, a published event, a tick, the start of a drain) with
/// the time passed in, changes its state, and returns what to do in an
/// ``EdgeOutput``: datagrams to send and calls to make. It never blocks,
/// reads no clock and opens no socket; the rim (``EdgeServer``) carries
/// its output out and brings the answers back.
///
/// Its parts: `EdgeMachine+Datagrams` (handshakes and secure packets),
/// `+Requests` (requests to the store and their replies), `+Broadcasts`
/// (events to copies, through the ``DeliveryEngine``), `+Sessions`
/// (restoring, loading and reporting sessions) and `+Output` (sealing).
///
/// Not thread-safe: one machine lives on one event loop.
struct EdgeMachine {
    // Implementation constants.
    /// Handshakes waiting for a signature from udpchat-keys at once; more get an error at once.
    static let maxHandshakesInFlight = 512
    /// Datagrams not of a known session (handshakes, mostly) waiting to be
    /// read after the sessions' ones, in number and in bytes; more are dropped.
    static let maxQueuedDatagrams = 1024
    static let maxQueuedBytes = 1 << 20
    /// Sessions being restored from the store at once, and datagrams held for each meanwhile.
    static let maxRestoring = 1024
    static let maxHeldPerSession = 16
    /// Store requests one session may have waiting.
    static let maxQueuedPerSession = 64
    /// Times a write is sent to the store to be carried out (each with the
    /// RPC deadline; the store runs it once). Then the edge asks once more,
    /// past the deadline, whether one was, before it tells the client.
    static let writeAttempts = 3
    /// How often idle sessions are swept, and how often liveness, addresses
    /// and cursors are reported to the store (no datagram and no ACK costs
    /// a write of its own).
    static let sweepInterval: UInt64 = 10_000_000_000
    static let reportInterval: UInt64 = 1_000_000_000
    /// Sessions in one report, and in one page loaded at start.
    static let reportBatch = 1000
    static let loadPage: UInt32 = 1000
    /// Replies kept for a client that asks again are dropped after this
    /// long without a packet (a client retries within seconds).
    static let repliesKept: UInt64 = 30_000_000_000
    /// A session not logged in stays in memory this long after its last packet.
    static let anonymousIdle: UInt64 = 120_000_000_000
    /// A store's stream with no mark for this long is forgotten (the store
    /// stopped; marks come every half second).
    static let streamSilence: UInt64 = 30_000_000_000

    let settings: EdgeSettings
    let logger: Logger
    let metrics: EdgeMetrics

    var table: SessionTable
    var delivery: DeliveryEngine
    /// Datagrams held while their session is restored from the store.
    var restoring: [String: [(SecureDatagram, Request)]] = [:]
    var handshakesInFlight = 0
    /// Datagrams not of a known session, and udpchat-keys' answers to
    /// handshakes (at most ``maxHandshakesInFlight``), waiting for
    /// ``readQueued(budget:_:_:)``.
    var queued = Deque<([UInt8], Request)>()
    var queuedBytes = 0
    var queuedAnswers = Deque<(Request, Result<IPCKeysResponse, RPCError>)>()
    /// The process's resident memory, as the rim last measured it.
    var memoryInUse = 0
    /// When new sessions were last refused at a limit, and said so in the log.
    var lastCapacityLog: UInt64 = 0
    var lastSweep: UInt64 = 0
    var lastReport: UInt64 = 0
    var reportsInFlight = 0
    /// Shutting down: only ACKs are taken (so the copies in flight can still
    /// be confirmed); anything else is dropped unanswered and untouched, and
    /// the client sends it again to the next edge.
    var draining = false

    /// Each store's event stream as this edge has seen it, by run (``IPCStreamMark``).
    var streams: [String: EventStreamState] = [:]
    /// Loading sessions (at start or to resynchronise) is under way, and
    /// whether another resynchronisation was asked for meanwhile.
    var loadingSessions = false
    var resyncWanted = false
    var resyncRetryAt: UInt64 = 0
    /// The load under way added sessions or rooms to follow.
    var loadAddedFollows = false

    /// Unauthenticated work per source address: handshakes (each costs an
    /// RSA signature) and error replies and session lookups.
    var handshakeLimiter: SourceLimiter<String>
    var unauthenticatedLimiter: SourceLimiter<String>
    /// LOGIN attempts per source address: password guessing from one place is slow.
    var loginLimiter: SourceLimiter<String>
    /// MESSAGE requests per user (the flow control a sender meets).
    var messageLimiter: SourceLimiter<String>
    /// Nonces for everything the edge seals.
    var nonces = Nonce.ServerPool()

    init(settings: EdgeSettings, logger: Logger, metrics: EdgeMetrics = EdgeMetrics()) {
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        table = SessionTable(maxPending: settings.maxPendingHandshakes)
        delivery = DeliveryEngine(policy: settings.deliveryPolicy)
        handshakeLimiter = SourceLimiter(rate: settings.handshakesPerSource, burst: 2 * settings.handshakesPerSource)
        unauthenticatedLimiter = SourceLimiter(rate: settings.errorsPerSource, burst: 2 * settings.errorsPerSource)
        loginLimiter = SourceLimiter(rate: settings.loginsPerSourcePerMinute / 60, burst: settings.loginsPerSourcePerMinute)
        messageLimiter = SourceLimiter(rate: settings.messagesPerUser, burst: 2 * settings.messagesPerUser)
    }

    // MARK: - Events in

    /// The edge starts serving: it loads the sessions active lately, so that
    /// clients that only listen get their broadcasts without speaking first.
    mutating func start(_ now: EdgeTime, _ out: inout EdgeOutput) {
        lastSweep = now.monotonic
        lastReport = now.monotonic
        resynchronise(now, &out)
    }

    /// Housekeeping and due retransmissions; the rim calls it at
    /// ``nextDeadline`` and at least every 100 ms.
    mutating func tick(_ now: EdgeTime, _ out: inout EdgeOutput) {
        var actions: [DeliveryEngine.Output] = []
        delivery.due(now: now.monotonic, &actions)
        perform(actions, now, &out)
        metrics.unacknowledged.record(delivery.inFlight)
        metrics.sessions.record(table.count)
        if now.monotonic &- lastSweep >= Self.sweepInterval {
            lastSweep = now.monotonic
            sweep(now, &out)
        }
        // One report at a time: while the store is still writing the last,
        // what moves meanwhile waits and goes in the next, so a busy store
        // gets fewer, larger reports instead of a queue of stale ones.
        if now.monotonic &- lastReport >= Self.reportInterval && reportsInFlight == 0 {
            lastReport = now.monotonic
            report(now, &out)
        }
        if resyncWanted && !loadingSessions && now.monotonic >= resyncRetryAt { resynchronise(now, &out) }
    }

    /// When the machine next wants a ``tick(_:_:)`` for a retransmission.
    mutating func nextDeadline() -> UInt64? { delivery.nextDeadline() }

    /// Graceful shutdown begins: from now on only ACKs are taken and
    /// nothing new is sent; copies on their way may still be confirmed.
    mutating func startDraining() {
        draining = true
        delivery.startDraining()
    }

    /// Requests, handshakes or restores not finished yet; copies on their
    /// way to sessions that acknowledge.
    var drainStatus: (busy: Bool, unconfirmed: Int) {
        let busy =
            handshakesInFlight > 0 || !restoring.isEmpty
            || table.indices.contains { table[$0]!.busy || !table[$0]!.queue.isEmpty }
        return (busy, delivery.awaitedByAcknowledgers)
    }

    /// The last report before the edge stops: every session's liveness,
    /// address and cursor, so the next edge resumes where this one stopped.
    mutating func finalReport(_ now: EdgeTime, _ out: inout EdgeOutput) {
        report(now, &out)
    }

    /// Takes a session out of memory (it is still in the store).
    mutating func forget(_ index: SessionTable.Index) {
        table.remove(index)
        delivery.removeSession(index)
    }

    /// Forgets sessions silent longer than `SESSION_IDLE_SECONDS`, drops the
    /// replies kept for sessions silent a while, and forgets rooms nobody
    /// follows.
    private mutating func sweep(_ now: EdgeTime, _ out: inout EdgeOutput) {
        var freed = 0
        let cutoff = Self.before(now.monotonic, settings.sessionIdle.nanoseconds)
        for index in table.idle(since: cutoff) where table[index]?.busy == false {
            forget(index)
            freed += 1
        }
        // A session that never logged in follows no room and is kept in the
        // store: after a short silence it leaves memory (a packet of its
        // own brings it back), so sessions made and left cost little.
        for index in table.anonymousIdle(since: Self.before(now.monotonic, Self.anonymousIdle)) where table[index]?.busy == false {
            forget(index)
            freed += 1
        }
        // Sessions another edge took while a request of theirs was under way here.
        for index in table.indices where table[index]?.movedAway == true && table[index]?.busy == false {
            forget(index)
            freed += 1
        }
        let quiet = Self.before(now.monotonic, Self.repliesKept)
        for index in table.idle(since: quiet) where !(table[index]!.replies.isEmpty) {
            table.update(index) { $0.replies = RecentReplies() }
            freed += 1
        }
        // Silent longer than the replay window's span: its remembered nonces can go.
        let silent = Self.before(now.monotonic, ReplayWindow.defaultSpan)
        for index in table.idle(since: silent) where table[index]!.replay.count > 0 {
            table.update(index) { $0.replay.compact() }
            freed += 1
        }
        forgetSilentStreams(now)
        delivery.pruneRooms()
        // What those sessions held goes back to the system, not only to the allocator.
        if freed >= Self.trimAfter { out.releaseFreeMemory = true }
    }

    /// Implementation constant: sessions whose memory was freed in one sweep
    /// before the allocator is asked to give its free pages back.
    static let trimAfter = 100

    // MARK: - Helpers

    /// `span` before `now`, or 0: the monotonic clock counts from boot, so
    /// early on it is smaller than the spans (a wrapped cutoff would make
    /// every session look idle).
    static func before(_ now: UInt64, _ span: UInt64) -> UInt64 { now > span ? now - span : 0 }

    /// Addresses in RATE_LIMIT_EXEMPT pass every per-source limit.
    func isExempt(_ address: PeerAddress) -> Bool { settings.exemptSources.contains(address.ip) }

    /// Session ids are 32 lowercase hex characters (docs/protocol.md §1.3);
    /// anything else cannot be in the store, so it is not looked up.
    static func isIdentifier(_ text: String) -> Bool {
        text.utf8.count == 2 * WireSpec.idBytes && Hex.decode(text) != nil
    }
}

/// Where one store's event stream stands for this edge.
struct EventStreamState {
    var lastEventId: UInt64
    /// Monotonic time of its last mark.
    var lastMark: UInt64
}
