import ChatWire
import Foundation

/// Threads of their own for CPU-bound work (the store's password hashing,
/// udpchat-keys' signatures), so that it never holds the request path or
/// the shared task pool, with a bounded queue: when it is full, the work is
/// refused at once (the server is busy) rather than queued without limit,
/// so a flood costs a bounded amount of work and memory.
public final class ThreadPool: Sendable {
    private struct Job: Sendable {
        let work: @Sendable () -> Void
    }

    private let condition = NSCondition()
    private let queue = MutexBox<[Job]>([])
    public let maximumWaiting: Int
    public let threads: Int
    private let stopped = MutexBox(false)
    /// Jobs run so far.
    public let completed = MutexBox(0)

    /// `threads` threads named `name-N`; at most `maximumWaiting` jobs wait for one.
    public init(name: String, threads: Int, maximumWaiting: Int) {
        self.maximumWaiting = maximumWaiting
        self.threads = max(1, threads)
        for index in 0..<self.threads {
            let thread = Thread { [self] in loop() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    /// Runs `work` on the pool; nil when the queue is full.
    public func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let accepted = queue.mutate { jobs -> Bool in
                guard jobs.count < maximumWaiting else { return false }
                jobs.append(
                    Job { [completed] in
                        let result = work()
                        completed.mutate { $0 += 1 }
                        continuation.resume(returning: result)
                    })
                return true
            }
            guard accepted else {
                continuation.resume(returning: nil)
                return
            }
            condition.lock()
            condition.signal()
            condition.unlock()
        }
    }

    /// Jobs waiting for a thread now.
    public var waiting: Int { queue.value.count }

    /// Lets the threads end once the queue is empty (tests; a program's
    /// pool lives as long as the program).
    public func stop() {
        condition.lock()
        stopped.value = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            var job = queue.mutate { $0.isEmpty ? nil : $0.removeFirst() }
            while job == nil {
                if stopped.value {
                    condition.unlock()
                    return
                }
                condition.wait()
                job = queue.mutate { $0.isEmpty ? nil : $0.removeFirst() }
            }
            condition.unlock()
            job?.work()
        }
    }
}
