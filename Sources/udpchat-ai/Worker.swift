import ChatLog
import ChatWire
import Foundation
import IPCMessages
import Logging
import Metrics
import Synchronization

/// Runs leased AI jobs: up to `concurrency` at once, each with its own
/// deadlines. It tells the store its free slots and running jobs every
/// heartbeat and whenever a slot frees, and re-sends each result until the
/// store confirms it committed, so neither a lost datagram of ZeroMQ nor a
/// store restart loses a reply.
final class Worker: Sendable {
    struct Options: Sendable {
        var name: String
        var concurrency: Int
        var heartbeat: Duration
        var limits: CallLimits
    }

    private struct Pending {
        var result: IPCJobResult
        /// Monotonic nanoseconds.
        var sentAt: UInt64
    }

    private struct State {
        var running: [String: Task<Void, Never>] = [:]
        var unconfirmed: [String: Pending] = [:]
        var stopping = false
        /// Monotonic nanoseconds.
        var lastHeardFromStore: UInt64
        var storeSilent = false
    }

    /// Implementation constant: a result the store never confirms is dropped
    /// after this (the store's lease has long moved the job on).
    static let resultRetention: Duration = .seconds(300)

    /// The outcomes a job can have, as `udpchat_ai_jobs_total` labels them.
    static let outcomes = ["reply", "failed", "handed_back"]

    /// Makes the outcome series, so that they read 0 from the first scrape.
    static func prepareMetrics() {
        for outcome in outcomes { _ = Counter(label: "udpchat_ai_jobs_total", dimensions: [("outcome", outcome)]) }
    }

    let options: Options
    let model: any ChatModel
    let logger: Logger
    private let send: @Sendable ([UInt8]) -> Void
    /// Reads the time for heartbeats, silence and job latency.
    let clock: any ServiceClock
    private let state: Mutex<State>

    /// `send` delivers a message to the store (the worker's DEALER socket).
    init(
        options: Options, model: any ChatModel, clock: any ServiceClock = SystemClock(), logger: Logger,
        send: @escaping @Sendable ([UInt8]) -> Void
    ) {
        self.clock = clock
        state = Mutex(State(lastHeardFromStore: clock.monotonic()))
        self.options = options
        self.model = model
        self.logger = logger
        self.send = send
    }

    /// A message from the store; called on the ZeroMQ thread.
    func received(_ body: [UInt8]) {
        guard let message = try? IPCDispatcherMessage(serializedBytes: body) else {
            logger.warning("undecodable message from the store dropped")
            return
        }
        let wasSilent = state.withLock { state -> Bool in
            defer {
                state.lastHeardFromStore = clock.monotonic()
                state.storeSilent = false
            }
            return state.storeSilent
        }
        if wasSilent { logger.info("the store answers again") }
        switch message.kind {
        case .assignment(let assignment): start(assignment)
        case .accepted(let accepted): _ = state.withLock { $0.unconfirmed.removeValue(forKey: accepted.jobID) }
        case .heartbeat, nil: break
        }
    }

    private func start(_ assignment: IPCJobAssignment) {
        let jobId = assignment.jobID
        let finished = state.withLock { $0.unconfirmed[jobId]?.result }
        if let finished {
            // Done already, but the store (restarted, say) did not hear: tell it again.
            sendResult(finished)
            return
        }
        let accepted = state.withLock { state -> Bool in
            if state.running[jobId] != nil { return true }  // the same job again: already running
            guard !state.stopping, state.running.count < options.concurrency else { return false }
            state.running[jobId] = Task { await self.run(assignment) }
            return true
        }
        if !accepted {
            var result = IPCJobResult()
            result.jobID = jobId
            result.lease = assignment.lease
            result.failure.handBack = true
            result.failure.message = "the worker had no free slot."
            sendResult(result)
        }
        sendStatus()
    }

    private func run(_ assignment: IPCJobAssignment) async {
        let job = assignment.job
        let remaining = Duration.milliseconds(Int64(assignment.remainingMs))
        let limits = CallLimits(firstToken: min(options.limits.firstToken, remaining), total: min(options.limits.total, remaining))
        var result = IPCJobResult()
        result.jobID = assignment.jobID
        result.lease = assignment.lease
        let started = clock.monotonic()
        do {
            let reply = try await model.reply(to: Prompt.messages(for: job), limits: limits)
            let text = Prompt.cleaned(reply, userName: job.userName)
            if text.isEmpty {
                result.failure.message = AIFailure.empty.message
            } else {
                result.text = text
            }
        } catch {
            if Task.isCancelled {
                result.failure.handBack = true
                result.failure.message = "the worker stopped."
            } else {
                result.failure.message = error.message
            }
        }
        let outcome = result.failure.message.isEmpty ? "reply" : "failure: \(result.failure.message)"
        let label = result.failure.message.isEmpty ? "reply" : (result.failure.handBack ? "handed_back" : "failed")
        Counter(label: "udpchat_ai_jobs_total", dimensions: [("outcome", label)]).increment()
        let took = clock.monotonic() &- started
        Timer(label: "udpchat_ai_job_seconds", dimensions: [("outcome", label)]).recordNanoseconds(Int64(took))
        logger.info(
            "AI job done",
            metadata: .fields(
                .job(assignment.jobID), .value("outcome", "\(outcome)"), .value("ms", "\(took / 1_000_000)")))
        state.withLock { state in
            state.running[assignment.jobID] = nil
            state.unconfirmed[assignment.jobID] = Pending(result: result, sentAt: clock.monotonic())
        }
        sendResult(result)
        sendStatus()
    }

    private func sendResult(_ result: IPCJobResult) {
        var message = IPCWorkerMessage()
        message.result = result
        if let body: [UInt8] = try? message.serializedBytes() { send(body) }
    }

    /// Whether the store has been heard from within three heartbeats (for `/readyz`).
    var storeResponds: Bool {
        state.withLock { clock.monotonic() &- $0.lastHeardFromStore <= 3 * options.heartbeat.nanoseconds }
    }

    /// Tells the store the free slots and running jobs.
    func sendStatus() {
        let (running, stopping) = state.withLock { (Array($0.running.keys), $0.stopping) }
        var message = IPCWorkerMessage()
        message.status.workerName = options.name
        message.status.freeSlots = UInt32(max(0, options.concurrency - running.count))
        message.status.runningJobs = running
        message.status.stopping = stopping
        if let body: [UInt8] = try? message.serializedBytes() { send(body) }
    }

    /// Heartbeats until cancelled: status, results not yet confirmed, and a
    /// note in the log when the store goes silent (it reconnects by itself).
    func heartbeat() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: options.heartbeat)
            sendStatus()
            let (resend, newlySilent) = state.withLock { state -> ([IPCJobResult], Bool) in
                // Read under the lock: a time stamped since by another thread is never later than it.
                let now = clock.monotonic()
                state.unconfirmed = state.unconfirmed.filter { now &- $0.value.sentAt < Self.resultRetention.nanoseconds }
                let silent = now &- state.lastHeardFromStore > 3 * options.heartbeat.nanoseconds
                defer { state.storeSilent = silent }
                return (state.unconfirmed.values.map(\.result), silent && !state.storeSilent)
            }
            for result in resend { sendResult(result) }
            if newlySilent { logger.warning("the store has been silent for three heartbeats; waiting for it") }
        }
    }

    /// Stops taking jobs, lets running ones finish within `limit`, then
    /// cancels the rest, which go back to the store for another worker.
    func drain(limit: Duration) async {
        let tasks = state.withLock { state -> [Task<Void, Never>] in
            state.stopping = true
            return Array(state.running.values)
        }
        sendStatus()
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline, state.withLock({ !$0.running.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        // Give the last results a moment on the socket.
        try? await Task.sleep(for: .milliseconds(200))
    }
}
