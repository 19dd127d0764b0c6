import ChatWire
import Foundation
import Synchronization

/// The single writer (docs/architecture.md, "Group commit"): write requests that
/// arrive while a transaction is committing are collected and run together
/// in the next one, each in its own savepoint, and each is answered only
/// after that transaction committed. Under light load a batch is one
/// request, so latency stays one commit; under heavy load one fsync serves
/// many requests.
///
/// A batch's outcomes are handed to `afterCommit` (which publishes their
/// events and hands out their AI jobs) after its commit and before any of
/// its requests is answered, in commit order.
final class GroupCommit: Sendable {
    /// One write: `setup` runs in a savepoint that is always kept (creating
    /// the session row), then `operation` runs in one that is rolled back
    /// when it throws or refuses the request.
    struct Write: Sendable {
        var setup: (@Sendable (any StoreTransaction) throws -> Void)?
        var operation: @Sendable (any StoreTransaction) throws -> Outcome
        /// Wall-clock Unix milliseconds after which the caller no longer
        /// waits: the write is then dropped, untouched, if it has not started.
        var deadlineUnixMs: Int64? = nil
        /// For a write past its deadline: the answer it got when an earlier
        /// copy of it was carried out, if one was (nil: none was).
        var recorded: (@Sendable (any StoreTransaction) throws -> Outcome?)? = nil
    }

    /// A write dropped because its caller's deadline passed before it could start.
    struct Expired: Error, CustomStringConvertible {
        var lateByMs: Int64
        var description: String { "a write was dropped unstarted, \(lateByMs) ms past its caller's deadline" }
    }

    private typealias Waiter = CheckedContinuation<Result<Outcome, any Error>, Never>

    private struct State {
        var queue: [(Write, Waiter)] = []
        var running = false
    }

    /// Implementation constant: bounds one transaction's duration and memory.
    static let maximumBatch = 512

    private let backend: any StorageBackend
    /// Reads the time a write's deadline is compared with.
    private let clock: any ServiceClock
    private let afterCommit: @Sendable ([Outcome]) -> Void
    private let state = Mutex(State())

    init(backend: any StorageBackend, clock: any ServiceClock = SystemClock(), afterCommit: @escaping @Sendable ([Outcome]) -> Void) {
        self.clock = clock
        self.backend = backend
        self.afterCommit = afterCommit
    }

    /// Runs `write` in the next transaction and returns once it committed.
    func submit(_ write: Write) async -> Result<Outcome, any Error> {
        await withCheckedContinuation { (waiter: Waiter) in
            let startDrain = state.withLock { state -> Bool in
                state.queue.append((write, waiter))
                guard !state.running else { return false }
                state.running = true
                return true
            }
            if startDrain { Task { await drain() } }
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLock { state -> [(Write, Waiter)] in
                guard !state.queue.isEmpty else {
                    state.running = false
                    return []
                }
                let count = min(Self.maximumBatch, state.queue.count)
                defer { state.queue.removeFirst(count) }
                return Array(state.queue.prefix(count))
            }
            if batch.isEmpty { return }
            let (writes, clock) = (batch.map(\.0), clock)
            do {
                let results = try await backend.write { tx in
                    writes.map { write in
                        Result { () throws -> Outcome in
                            if let deadline = write.deadlineUnixMs {
                                let now = clock.wallMilliseconds()
                                if now > deadline {
                                    // Not carried out now; but a copy that was says so.
                                    if let recorded = write.recorded, let outcome = try recorded(tx) { return outcome }
                                    throw Expired(lateByMs: now - deadline)
                                }
                            }
                            if let setup = write.setup { try tx.inSavepoint { (try setup(tx), true) } }
                            return try tx.inSavepoint {
                                let outcome = try write.operation(tx)
                                return (outcome, !outcome.isRefusal)
                            }
                        }
                    }
                }
                afterCommit(results.compactMap { try? $0.get() })
                for (i, item) in batch.enumerated() { item.1.resume(returning: results[i]) }
            } catch {
                for item in batch { item.1.resume(returning: .failure(error)) }
            }
        }
    }
}
