import ChatWire
import Foundation

/// A few threads of their own for password hashing, so that 35 ms of scrypt
/// never runs on the store's request path or the shared task pool, with a
/// bounded queue: when it is full, a login is refused at once (the server
/// is busy) rather than queued without limit.
final class HashingPool: Sendable {
    private struct Job: Sendable {
        let work: @Sendable () -> Void
    }

    private let condition = NSCondition()
    private let queue = MutexBox<[Job]>([])
    let maximumWaiting: Int
    /// Jobs run so far.
    let completed = MutexBox(0)

    init(threads: Int, maximumWaiting: Int) {
        self.maximumWaiting = maximumWaiting
        for index in 0..<max(1, threads) {
            let thread = Thread { [self] in loop() }
            thread.name = "udpchat-hashing-\(index)"
            thread.start()
        }
    }

    /// Runs `work` on the pool; nil when the queue is full.
    func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
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

    private func loop() {
        while true {
            condition.lock()
            var job = queue.mutate { $0.isEmpty ? nil : $0.removeFirst() }
            while job == nil {
                condition.wait()
                job = queue.mutate { $0.isEmpty ? nil : $0.removeFirst() }
            }
            condition.unlock()
            job?.work()
        }
    }
}
