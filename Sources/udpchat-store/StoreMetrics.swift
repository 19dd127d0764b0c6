import ChatWire
import Metrics

/// The store's metrics beyond the RPC ones (the README lists them).
enum StoreMetrics {
    /// A batch committed: its size, and the messages it stored.
    private static let batchSize = Recorder(label: "udpchat_store_batch_size", aggregate: true)
    private static let messagesStored = Counter(label: "udpchat_store_messages_stored_total")
    private static let requestsExpired = Counter(label: "udpchat_store_requests_expired_total")

    static let jobStates = ["queued", "leased", "completed", "failed"]

    /// Makes the series every store has, so that they read 0 from the first
    /// scrape rather than appearing with their first event.
    static func prepare() {
        _ = batchSize
        _ = messagesStored
        _ = requestsExpired
        for state in jobStates { _ = Counter(label: "udpchat_store_ai_jobs_total", dimensions: [("state", state)]) }
        jobQueue(pending: 0, leased: 0, workers: 0)
    }

    static func committed(_ outcomes: [Outcome]) {
        batchSize.record(outcomes.count)
        let messages = outcomes.reduce(0) { total, outcome in
            total
                + outcome.events.filter {
                    if case .room(let room)? = $0.kind, case .message? = room.body { return true } else { return false }
                }.count
        }
        if messages > 0 { messagesStored.increment(by: messages) }
    }

    /// A write dropped unstarted: its caller had given up on it.
    static func expired() { requestsExpired.increment() }

    static func request(_ method: String, nanoseconds: UInt64) {
        Timer(label: "udpchat_store_request_seconds", dimensions: [("method", method)]).recordNanoseconds(Int64(nanoseconds))
    }

    static func job(_ state: String) {
        Counter(label: "udpchat_store_ai_jobs_total", dimensions: [("state", state)]).increment()
    }

    private static let pendingJobs = Gauge(label: "udpchat_store_ai_jobs_open", dimensions: [("state", "queued")])
    private static let leasedJobs = Gauge(label: "udpchat_store_ai_jobs_open", dimensions: [("state", "leased")])
    private static let workers = Gauge(label: "udpchat_store_ai_workers")

    /// Jobs waiting for a worker, jobs a worker holds, and workers connected.
    static func jobQueue(pending: Int, leased: Int, workers count: Int) {
        pendingJobs.record(pending)
        leasedJobs.record(leased)
        workers.record(count)
    }

    static func jobFinished(_ outcome: String, milliseconds: Int64) {
        Timer(label: "udpchat_store_ai_job_seconds", dimensions: [("outcome", outcome)]).recordMilliseconds(milliseconds)
    }
}
