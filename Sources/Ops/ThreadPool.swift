import ChatWire
import Foundation

#if os(Linux)
    import CLibrary
#endif

/// Threads of their own for CPU-bound work (the store's password hashing,
/// udpchat-keys' signatures), so that it never holds the request path or
/// the shared task pool, with a bounded queue: when it is full, the work is
/// refused at once (the server is busy) rather than queued without limit,
/// so a flood costs a bounded amount of work and memory.
public final class ThreadPool: Sendable {
    private struct Job: Sendable {
        /// Items of work it holds: what the queue's bound counts.
        let weight: Int
        let work: @Sendable () -> Void
    }

    private struct Queue {
        var jobs: [Job] = []
        var weight = 0
    }

    private let condition = NSCondition()
    private let queue = MutexBox(Queue())
    public let maximumWaiting: Int
    public let threads: Int
    private let stopped = MutexBox(false)
    /// Items of work done so far.
    public let completed = MutexBox(0)

    /// `threads` threads named `name-N`; at most `maximumWaiting` items of
    /// work wait for one. A `niceness` above 0 lowers the threads' CPU
    /// priority below the process's other threads (Linux: per thread), so
    /// that background work yields the cores to the request path.
    public init(name: String, threads: Int, maximumWaiting: Int, niceness: Int32 = 0) {
        self.maximumWaiting = maximumWaiting
        self.threads = max(1, threads)
        for index in 0..<self.threads {
            let thread = Thread { [self] in
                #if os(Linux)
                    if niceness != 0 { _ = clibrary_set_thread_niceness(niceness) }
                #endif
                loop()
            }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    /// Runs `work` on the pool; nil when the queue is full.
    public func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
        await map([()]) { _ in work() }?.first
    }

    /// Runs `work` for each of `items`, shared among the threads in one job
    /// per thread (a few hand-offs for many items, not one each); the
    /// results in the order of `items`. Nil, and nothing run, when the
    /// queue has no room for them all.
    public func map<Item: Sendable, T: Sendable>(_ items: [Item], _ work: @escaping @Sendable (Item) -> T) async -> [T]? {
        await withCheckedContinuation { (continuation: CheckedContinuation<[T]?, Never>) in
            submit(items, work) { continuation.resume(returning: $0) }
        }
    }

    /// ``map(_:_:)`` with a completion instead of a wait: `done` gets the
    /// results on the pool thread that finished last, or nil at once when
    /// the queue has no room for them all.
    public func submit<Item: Sendable, T: Sendable>(
        _ items: [Item], _ work: @escaping @Sendable (Item) -> T, done: @escaping @Sendable ([T]?) -> Void
    ) {
        guard !items.isEmpty else { return done([]) }
        let shares = min(items.count, threads)
        let results = MutexBox((made: [T?](repeating: nil, count: items.count), remaining: shares))
        let jobs = (0..<shares).map { share in
            let range = items.count * share / shares..<items.count * (share + 1) / shares
            return Job(weight: range.count) { [completed] in
                let made = items[range].map(work)
                completed.mutate { $0 += made.count }
                let all = results.mutate { state -> [T]? in
                    state.made.replaceSubrange(range, with: made.map(Optional.some))
                    state.remaining -= 1
                    return state.remaining == 0 ? state.made.map { $0! } : nil
                }
                if let all { done(all) }
            }
        }
        let accepted = queue.mutate { queue -> Bool in
            guard queue.weight + items.count <= maximumWaiting else { return false }
            queue.jobs += jobs
            queue.weight += items.count
            return true
        }
        guard accepted else { return done(nil) }
        condition.lock()
        if shares == 1 { condition.signal() } else { condition.broadcast() }
        condition.unlock()
    }

    /// Items of work waiting for a thread now.
    public var waiting: Int { queue.value.weight }

    /// Lets the threads end once the queue is empty (tests; a program's
    /// pool lives as long as the program).
    public func stop() {
        condition.lock()
        stopped.value = true
        condition.broadcast()
        condition.unlock()
    }

    private func take() -> Job? {
        queue.mutate { queue in
            guard !queue.jobs.isEmpty else { return nil }
            let job = queue.jobs.removeFirst()
            queue.weight -= job.weight
            return job
        }
    }

    private func loop() {
        while true {
            condition.lock()
            var job = take()
            while job == nil {
                if stopped.value {
                    condition.unlock()
                    return
                }
                condition.wait()
                job = take()
            }
            condition.unlock()
            job?.work()
        }
    }
}
