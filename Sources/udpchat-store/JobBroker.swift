import ChatLog
import ChatWire
import Foundation
import IPC
import IPCMessages
import Logging

/// Runs the ``JobQueue`` against the workers' socket, the clock and the
/// database. Every event goes through one mailbox and is handled in order
/// by one task, so the queue needs no lock.
final class JobBroker: Sendable {
    enum Event: Sendable {
        /// Committed by a request's transaction (or found at start-up).
        case enqueued(QueuedJob)
        case fromWorker(peer: [UInt8], body: [UInt8])
        case tick
    }

    struct Timing: Sendable {
        var heartbeat: Duration = .seconds(1)
        var lease: Duration = .seconds(10)
        /// Paranoid Pirate: a peer is gone after three missed heartbeats.
        var silenceLimit: Duration { heartbeat * 3 }
    }

    let mailbox: AsyncStream<Event>
    /// Posts an event; callable from any thread, events are handled in order.
    let post: AsyncStream<Event>.Continuation
    private let timing: Timing
    private let logger: Logger
    private let router: MessageRouter
    /// When each open job was queued (monotonic), for the job latency metric.
    private let queuedAt = MutexBox<[String: UInt64]>([:])

    /// Binds the workers' endpoint; their messages and committed jobs queue
    /// in the mailbox until ``run(service:)`` handles them.
    init(reactor: ZMQReactor, endpoint: String, timing: Timing, logger: Logger) throws {
        let (mailbox, post) = AsyncStream<Event>.makeStream(bufferingPolicy: .unbounded)
        self.mailbox = mailbox
        self.post = post
        self.timing = timing
        self.logger = logger
        router = try MessageRouter(reactor: reactor, bind: endpoint, logger: logger) { peer, body in
            post.yield(.fromWorker(peer: peer, body: body))
        }
    }

    /// Handles events until the mailbox finishes. Jobs left in the database
    /// from before a restart are queued again (or failed, if late) first.
    func run(service: StoreService) async {
        var queue = JobQueue(leaseDuration: timing.lease.nanoseconds, workerTimeout: timing.silenceLimit.nanoseconds)
        await recover(service: service, into: &queue)
        let ticker = Task { [post, timing] in
            while !Task.isCancelled {
                try? await Task.sleep(for: timing.heartbeat / 4)
                post.yield(.tick)
            }
        }
        defer { ticker.cancel() }
        var lastHeartbeat: UInt64 = 0
        var lastLeaseRenewal = service.clock.monotonic()
        for await event in mailbox {
            let now = service.clock.monotonic()
            switch event {
            case .enqueued(let queued):
                await enqueue(queued, now: now, wallNow: service.clock.wallMilliseconds(), service: service, queue: &queue)
            case .fromWorker(let peer, let body):
                await received(body, from: peer, now: now, service: service, queue: &queue)
            case .tick:
                await perform(queue.tick(now: now), service: service, queue: &queue)
                if now &- lastLeaseRenewal >= service.aiPolicy.owner.renewEvery.nanoseconds {
                    lastLeaseRenewal = now
                    await holdJobs(service: service, queue: &queue)
                }
                if now &- lastHeartbeat >= timing.heartbeat.nanoseconds {
                    lastHeartbeat = now
                    var message = IPCDispatcherMessage()
                    message.heartbeat = IPCDispatcherHeartbeat()
                    for peer in queue.workers.keys { send(message, to: peer) }
                }
            }
            StoreMetrics.jobQueue(pending: queue.pending.count, leased: queue.leases.count, workers: queue.workers.count)
        }
    }

    private static func job(_ queued: QueuedJob, deadline: UInt64) -> JobQueue.Job {
        JobQueue.Job(jobId: queued.row.jobId, payload: queued.job, deadline: deadline)
    }

    /// At start: the queued jobs left by an earlier run of this store
    /// (with SQLite, every one: no other store shares the file), or, with
    /// several stores, those whose store's lease ran out.
    private func recover(service: StoreService, into queue: inout JobQueue) async {
        let taken = await claim(service: service, all: service.backend is SQLiteBackend, into: &queue)
        if taken > 0 { logger.info("AI jobs queued again after a restart", metadata: .fields(.count(taken))) }
    }

    /// Every few seconds: renews the lease of the jobs this store holds, and
    /// takes the jobs of a store that stopped (their lease ran out).
    private func holdJobs(service: StoreService, queue: inout JobQueue) async {
        let owner = service.aiPolicy.owner
        let until = service.clock.wallMilliseconds() + owner.leaseMs
        // Only the jobs held here: one dropped from memory (its end failed to
        // commit) runs out and is taken again.
        let held = Array(queue.heldJobIds)
        do {
            _ = try await service.backend.write { tx in try tx.renewJobLeases(run: owner.run, jobIds: held, until: until) }
        } catch {
            logger.warning("cannot renew the AI jobs' leases", metadata: .fields(.error(error)))
        }
        let taken = await claim(service: service, all: false, into: &queue)
        if taken > 0 { logger.info("took the AI jobs of a store that stopped", metadata: .fields(.count(taken))) }
    }

    /// Claims queued jobs in the database and queues them; how many.
    private func claim(service: StoreService, all: Bool, into queue: inout JobQueue) async -> Int {
        let owner = service.aiPolicy.owner
        let wallNow = service.clock.wallMilliseconds()
        let rows: [JobRow]
        do {
            rows = try await service.backend.write { tx in
                try tx.claimJobs(run: owner.run, now: wallNow, until: wallNow + owner.leaseMs, limit: Self.claimBatch, all: all)
            }
        } catch {
            logger.error("cannot take queued AI jobs", metadata: .fields(.error(error)))
            return 0
        }
        let now = service.clock.monotonic()
        let held = queue.heldJobIds
        for row in rows where !held.contains(row.jobId) {
            guard row.deadlineAt > wallNow, let job = try? IPCAIJob(serializedBytes: row.request) else {
                await end(row.jobId, service: service, queue: &queue) { tx in
                    try Operations.failJob(tx, jobId: row.jobId, reason: "the store restarted and the job's time ran out.", nowMs: wallNow)
                }
                continue
            }
            await enqueue(QueuedJob(row: row, job: job), now: now, wallNow: wallNow, service: service, queue: &queue)
        }
        return rows.count
    }

    /// Queues a job for the workers, its deadline on the monotonic clock.
    private func enqueue(_ queued: QueuedJob, now: UInt64, wallNow: Int64, service: StoreService, queue: inout JobQueue) async {
        StoreMetrics.job("queued")
        queuedAt.mutate { $0[queued.row.jobId] = now }
        let remaining = UInt64(max(0, queued.row.deadlineAt - wallNow)) * 1_000_000
        await perform(queue.enqueue(Self.job(queued, deadline: now &+ remaining), now: now), service: service, queue: &queue)
    }

    /// Implementation constant: jobs taken from the database at once.
    static let claimBatch = 1000

    private func received(_ body: [UInt8], from peer: [UInt8], now: UInt64, service: StoreService, queue: inout JobQueue) async {
        guard let message = try? IPCWorkerMessage(serializedBytes: body) else {
            logger.warning("undecodable message from an AI worker dropped")
            return
        }
        switch message.kind {
        case .status(let status):
            if queue.workers[peer] == nil { logger.info("AI worker joined", metadata: .fields(.worker(status.workerName), .value("free_slots", "\(status.freeSlots)"))) }
            await perform(queue.status(from: peer, status, now: now), service: service, queue: &queue)
        case .result(let result):
            let (disposition, actions) = queue.result(from: peer, result, now: now)
            let nowMs = service.clock.wallMilliseconds()
            switch disposition {
            case .complete(let jobId, let text):
                await end(jobId, service: service, queue: &queue) { tx in
                    try Operations.completeJob(tx, jobId: jobId, text: text, nowMs: nowMs)
                }
            case .failed(let jobId, let reason):
                await end(jobId, service: service, queue: &queue) { tx in
                    try Operations.failJob(tx, jobId: jobId, reason: reason, nowMs: nowMs)
                }
            case .handedBack, .duplicate:
                break
            }
            if disposition != .handedBack {
                var accepted = IPCDispatcherMessage()
                accepted.accepted.jobID = result.jobID
                send(accepted, to: peer)
            }
            await perform(actions, service: service, queue: &queue)
        case nil:
            break
        }
    }

    private func perform(_ actions: [JobQueue.Action], service: StoreService, queue: inout JobQueue) async {
        for action in actions {
            switch action {
            case .assign(let peer, let jobId, let lease, let remainingMs, let job):
                var message = IPCDispatcherMessage()
                message.assignment.jobID = jobId
                message.assignment.lease = lease
                message.assignment.remainingMs = remainingMs
                message.assignment.job = job
                send(message, to: peer)
                StoreMetrics.job("leased")
                logger.debug("AI job leased", metadata: .fields(.job(jobId), .value("lease", "\(lease)")))
            case .fail(let jobId, let reason):
                let nowMs = service.clock.wallMilliseconds()
                await end(jobId, service: service, queue: &queue) { tx in
                    try Operations.failJob(tx, jobId: jobId, reason: reason, nowMs: nowMs)
                }
            case .dropped(let name, let jobs):
                logger.warning("AI worker went silent; its jobs are queued again", metadata: .fields(.worker(name), .count(jobs.count)))
            }
        }
    }

    /// Commits a job's end; its events go out after the commit.
    private func end(
        _ jobId: String, service: StoreService, queue: inout JobQueue,
        _ write: @escaping @Sendable (any StoreTransaction) throws -> Outcome
    ) async {
        let result = await service.commit.submit(GroupCommit.Write(setup: nil, operation: write))
        if case .failure(let error) = result {
            logger.error("ending AI job failed", metadata: .fields(.job(jobId), .error(error)))
        }
        queue.ended(jobId)
        // What was committed decides, not what was asked: a reply can still
        // fail the job (empty, the room closed, the requester left).
        let failed =
            (try? result.get())?.events.contains { if case .sessionNotice? = $0.kind { return true } else { return false } } ?? true
        let outcome = failed ? "failed" : "completed"
        StoreMetrics.job(outcome)
        if let started = queuedAt.mutate({ $0.removeValue(forKey: jobId) }) {
            StoreMetrics.jobFinished(outcome, milliseconds: Int64((service.clock.monotonic() &- started) / 1_000_000))
        }
    }

    private func send(_ message: IPCDispatcherMessage, to peer: [UInt8]) {
        guard let body: [UInt8] = try? message.serializedBytes() else { return }
        router.send(to: peer, body)
    }
}
