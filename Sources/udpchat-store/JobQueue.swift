import ChatWire
import DequeModule
import IPCMessages

/// The AI job queue with leases (docs/architecture.md, "AI reply"): the zguide's
/// load-balancing pattern with Paranoid Pirate heartbeats. A pure state
/// machine: it takes events with the current time (monotonic nanoseconds)
/// and returns what to send; the broker owns the socket, the database and
/// the clock. Not thread-safe.
///
/// - Workers report their free slots and running jobs in every status
///   message; a worker silent for `workerTimeout` is dropped and its jobs go
///   back to the front of the queue.
/// - A job is leased to the worker with the most free slots (the one idle
///   longest on a tie). A lease lives while the worker lists the job as
///   running; one the worker never confirms expires after `leaseDuration`.
/// - A job whose worker was lost is leased again, up to `maxAttempts`
///   times; a job still waiting at its deadline fails.
/// - With no worker to take it, a job fails once it has waited
///   `workerTimeout` (a worker starting up reports at once): the requester
///   learns in seconds that nothing will answer, not at the deadline.
/// - The first result for a job ends it; later ones are only acknowledged.
struct JobQueue {
    struct Job: Sendable {
        var jobId: String
        var payload: IPCAIJob
        /// Monotonic deadline of the whole job.
        var deadline: UInt64
        var attempts = 0
        /// The last worker it was leased to, for the error text.
        var wasLeased = false
        /// When it last started waiting for a worker (queued or queued again).
        var waitingSince: UInt64 = 0
    }

    struct Worker {
        var peer: [UInt8]
        var name: String
        var lastSeen: UInt64
        var freeSlots: Int
        var running: Set<String>
        var stopping: Bool
        var lastAssigned: UInt64 = 0
    }

    struct Lease {
        var job: Job
        var peer: [UInt8]
        var lease: UInt64
        var expiry: UInt64
    }

    enum Action: Sendable {
        /// Send the job to the worker.
        case assign(peer: [UInt8], jobId: String, lease: UInt64, remainingMs: UInt32, job: IPCAIJob)
        /// End the job with this error for its requester.
        case fail(jobId: String, reason: String)
        /// A worker went silent; its jobs were queued again.
        case dropped(name: String, jobs: [String])
    }

    /// What a worker's result means.
    enum Disposition: Equatable {
        /// The first result: store the reply.
        case complete(jobId: String, text: String)
        /// The first result: the job failed.
        case failed(jobId: String, reason: String)
        /// The worker did not run it; it was queued again.
        case handedBack
        /// The job already ended (or is ending): acknowledge only.
        case duplicate
    }

    let leaseDuration: UInt64
    let workerTimeout: UInt64
    let maxAttempts: Int

    private(set) var pending = Deque<Job>()
    private(set) var leases: [String: Lease] = [:]
    private(set) var workers: [[UInt8]: Worker] = [:]
    /// Jobs whose result is being committed: no second result may start another commit.
    private var ending: Set<String> = []
    private var nextLease: UInt64 = 1

    /// Every job this queue holds: waiting, running or being ended.
    var heldJobIds: Set<String> { Set(pending.map(\.jobId)).union(leases.keys).union(ending) }

    init(leaseDuration: UInt64, workerTimeout: UInt64, maxAttempts: Int = 3) {
        self.leaseDuration = leaseDuration
        self.workerTimeout = workerTimeout
        self.maxAttempts = maxAttempts
    }

    /// Jobs waiting or running.
    var openJobs: Int { pending.count + leases.count }

    mutating func enqueue(_ job: Job, now: UInt64) -> [Action] {
        guard leases[job.jobId] == nil, !ending.contains(job.jobId), !pending.contains(where: { $0.jobId == job.jobId }) else {
            return []
        }
        var job = job
        job.waitingSince = now
        pending.append(job)
        return dispatch(now: now)
    }

    /// A worker's status: registers it if new, refreshes it, extends the
    /// leases of the jobs it runs.
    mutating func status(from peer: [UInt8], _ status: IPCWorkerStatus, now: UInt64) -> [Action] {
        var worker =
            workers[peer]
            ?? Worker(peer: peer, name: status.workerName, lastSeen: now, freeSlots: 0, running: [], stopping: false)
        worker.lastSeen = now
        worker.freeSlots = Int(status.freeSlots)
        worker.running = Set(status.runningJobs)
        worker.stopping = status.stopping
        workers[peer] = worker
        for (jobId, lease) in leases where lease.peer == peer && worker.running.contains(jobId) {
            leases[jobId]!.expiry = now &+ leaseDuration
        }
        return dispatch(now: now)
    }

    /// A worker's result for a job.
    mutating func result(from peer: [UInt8], _ result: IPCJobResult, now: UInt64) -> (Disposition, [Action]) {
        let jobId = result.jobID
        if ending.contains(jobId) { return (.duplicate, []) }
        let job: Job
        if let lease = leases.removeValue(forKey: jobId) {
            job = lease.job
        } else if let index = pending.firstIndex(where: { $0.jobId == jobId }) {
            // Leased before and queued again, but the first worker finished after all.
            job = pending.remove(at: index)
        } else {
            return (.duplicate, [])
        }
        switch result.outcome {
        case .failure(let failure) where failure.handBack:
            var again = job
            again.attempts = max(0, again.attempts - 1)
            again.waitingSince = now
            pending.insert(again, at: 0)
            return (.handedBack, dispatch(now: now))
        case .failure(let failure):
            ending.insert(jobId)
            return (.failed(jobId: jobId, reason: failure.message), dispatch(now: now))
        case .text(let text):
            ending.insert(jobId)
            return (.complete(jobId: jobId, text: text), dispatch(now: now))
        case nil:
            ending.insert(jobId)
            return (.failed(jobId: jobId, reason: "the AI worker sent an empty result."), dispatch(now: now))
        }
    }

    /// The broker committed the job's end.
    mutating func ended(_ jobId: String) { ending.remove(jobId) }

    /// Drops silent workers, requeues expired leases, fails late jobs.
    mutating func tick(now: UInt64) -> [Action] {
        var actions: [Action] = []
        for (peer, worker) in workers where now &- worker.lastSeen > workerTimeout {
            workers[peer] = nil
            let lost = leases.values.filter { $0.peer == peer }.map(\.job.jobId)
            for jobId in lost { requeue(leases.removeValue(forKey: jobId)!.job, now: now, actions: &actions) }
            actions.append(.dropped(name: worker.name, jobs: lost))
        }
        for (jobId, lease) in leases where lease.expiry <= now {
            leases[jobId] = nil
            requeue(lease.job, now: now, actions: &actions)
        }
        for (jobId, lease) in leases where lease.job.deadline <= now {
            leases[jobId] = nil
            ending.insert(jobId)
            actions.append(.fail(jobId: jobId, reason: "the AI worker did not finish in time."))
        }
        while let index = pending.firstIndex(where: { $0.deadline <= now }) {
            let job = pending.remove(at: index)
            ending.insert(job.jobId)
            let reason =
                job.wasLeased
                ? "the AI worker stopped answering and no other took the job in time."
                : "no AI worker took the job in time (is udpchat-ai running?)."
            actions.append(.fail(jobId: job.jobId, reason: reason))
        }
        if !hasLiveWorker(now: now) {
            while let index = pending.firstIndex(where: { now &- $0.waitingSince >= workerTimeout }) {
                let job = pending.remove(at: index)
                ending.insert(job.jobId)
                actions.append(.fail(jobId: job.jobId, reason: Self.noWorker))
            }
        }
        return actions + dispatch(now: now)
    }

    static let noWorker = "no AI worker is running (is udpchat-ai started?)."

    /// Whether any worker heard from lately will take jobs.
    private func hasLiveWorker(now: UInt64) -> Bool {
        workers.values.contains { !$0.stopping && now &- $0.lastSeen <= workerTimeout }
    }

    private mutating func requeue(_ job: Job, now: UInt64, actions: inout [Action]) {
        if job.attempts >= maxAttempts {
            ending.insert(job.jobId)
            actions.append(.fail(jobId: job.jobId, reason: "the AI worker stopped answering \(job.attempts) times."))
        } else {
            var job = job
            job.waitingSince = now
            pending.insert(job, at: 0)
        }
    }

    /// Free slots a worker has, less the jobs sent that it has not listed yet.
    private func capacity(_ worker: Worker) -> Int {
        let unconfirmed = leases.values.filter { $0.peer == worker.peer && !worker.running.contains($0.job.jobId) }.count
        return worker.freeSlots - unconfirmed
    }

    private mutating func dispatch(now: UInt64) -> [Action] {
        var actions: [Action] = []
        while !pending.isEmpty {
            let candidates = workers.values.filter { !$0.stopping && now &- $0.lastSeen <= workerTimeout }
                .map { ($0, capacity($0)) }.filter { $0.1 > 0 }
            guard let (worker, _) = candidates.max(by: { a, b in a.1 < b.1 || (a.1 == b.1 && a.0.lastAssigned > b.0.lastAssigned) })
            else { break }
            var job = pending.removeFirst()
            guard job.deadline > now else {
                pending.insert(job, at: 0)  // tick fails it
                break
            }
            job.attempts += 1
            job.wasLeased = true
            let lease = nextLease
            nextLease += 1
            leases[job.jobId] = Lease(job: job, peer: worker.peer, lease: lease, expiry: now &+ leaseDuration)
            workers[worker.peer]!.lastAssigned = now
            let remaining = UInt32(min(UInt64(UInt32.max), (job.deadline - now) / 1_000_000))
            actions.append(.assign(peer: worker.peer, jobId: job.jobId, lease: lease, remainingMs: remaining, job: job.payload))
        }
        return actions
    }
}
