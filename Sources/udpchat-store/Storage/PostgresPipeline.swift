import ChatWire
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO

/// The statements of one transaction on their way to PostgreSQL, for the
/// thread that runs the transaction.
///
/// Each statement whose answer is awaited costs two thread wake-ups (the
/// connection's event loop, then the waiting thread), and that, not the
/// server, is where a store on PostgreSQL spent its time
/// (docs/performance.md). So a statement whose answer nobody reads (an
/// insert, an update, a savepoint) is only queued here, and goes out with
/// the next statement that is awaited, in one hop to the event loop: the
/// connection runs statements in the order sent, so the awaited one is
/// answered after them. PostgreSQL fails every statement after one that
/// failed in a transaction, so the first failure is the one reported.
final class PostgresPipeline: @unchecked Sendable {
    private let connection: PostgresConnection
    private let logger: Logger
    /// Statements not sent yet (touched by the transaction's thread only).
    private var queued: [PostgresQuery] = []
    /// 1 once the awaited statement was answered; `answer` and
    /// `firstFailure` are written by the event loop under it.
    private let answered = ConditionLock(value: 0)
    private var answer: Result<PostgresQueryResult, any Error>?
    private var firstFailure: (any Error)?

    init(connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// Exchanges with the server so far.
    private var exchanges = 0

    /// A point in the statements, to undo what came after it.
    struct Mark {
        fileprivate let exchanges: Int
        fileprivate let queued: Int
    }

    var mark: Mark { Mark(exchanges: exchanges, queued: queued.count) }

    /// Whether nothing was sent or queued since `mark`.
    func untouched(since mark: Mark) -> Bool {
        exchanges == mark.exchanges && queued.count == mark.queued
    }

    /// Queues a statement whose answer is not needed.
    func send(_ query: PostgresQuery) {
        queued.append(query)
    }

    /// Drops the statements queued since `mark` that were not sent; whether
    /// any statement since `mark` reached the server (and must be rolled back there).
    func discard(since mark: Mark) -> Bool {
        if exchanges == mark.exchanges {
            queued.removeSubrange(mark.queued...)
            return false
        }
        // Everything still queued came after the last exchange, so after `mark`.
        queued.removeAll(keepingCapacity: true)
        return true
    }

    /// Sends the queued statements and `query`, and waits for its answer.
    /// Throws the first failure among them.
    func run(_ query: PostgresQuery) throws -> (rows: [PostgresRow], changed: Int) {
        let (answer, earlier) = exchange(query)
        // After a failed statement PostgreSQL fails the rest of the
        // transaction: the first failure is the one that says why.
        if let earlier { throw PostgresLink.failure(earlier) }
        do {
            let result = try answer.get()
            return (Array(result.rows), result.metadata.rows ?? 0)
        } catch {
            throw PostgresLink.failure(error)
        }
    }

    /// Sends COMMIT with the queued statements; throws unless the server
    /// committed (a transaction that had failed answers COMMIT with
    /// ROLLBACK, and no error).
    func commit() throws {
        let (answer, earlier) = exchange("COMMIT")
        if let earlier { throw PostgresLink.failure(earlier) }
        let command: String
        do {
            command = try answer.get().metadata.command
        } catch {
            throw PostgresLink.failure(error)
        }
        guard command == "COMMIT" else { throw ChatError.storage("PostgreSQL did not commit the transaction (\(command))") }
    }

    /// Waits until every queued statement has been answered; throws the
    /// first that failed.
    func settle() throws {
        guard let last = queued.popLast() else { return }
        _ = try run(last)
    }

    /// Sends `query` (a rollback, after ``discard(since:)``) and waits for
    /// it: what failed before it is undone by it, so only its own failure
    /// is thrown.
    func rollback(_ query: PostgresQuery) throws {
        let (answer, _) = exchange(query)
        do {
            _ = try answer.get()
        } catch {
            throw PostgresLink.failure(error)
        }
    }

    /// Implementation constant: how long an answer may take (past the
    /// server's statement timeout of 30 s, so only a connection that went
    /// silent reaches it).
    static let answerLimitSeconds = 45.0

    /// Set when an answer did not come: the connection's state is unknown,
    /// so nothing more is sent on it (the link connects again).
    private var silent = false

    /// The awaited statement's answer, and the first failure of those sent before it.
    private func exchange(_ query: PostgresQuery) -> (answer: Result<PostgresQueryResult, any Error>, earlier: (any Error)?) {
        let batch = queued
        queued.removeAll(keepingCapacity: true)
        exchanges += 1
        if silent || connection.isClosed {
            return (.failure(ChatError.storage("the connection is closed")), nil)
        }
        // Waiting here for the event loop that must answer would never end.
        connection.eventLoop.preconditionNotInEventLoop()
        answered.lock()
        answer = nil
        firstFailure = nil
        answered.unlock(withValue: 0)
        let connection = connection
        let logger = logger
        connection.eventLoop.execute { [self] in
            guard !connection.isClosed else {
                answered.lock()
                answer = .failure(ChatError.storage("the connection closed"))
                answered.unlock(withValue: 1)
                return
            }
            for statement in batch {
                connection.query(statement, logger: logger).whenFailure { [self] error in
                    answered.lock()
                    if firstFailure == nil { firstFailure = error }
                    answered.unlock()
                }
            }
            connection.query(query, logger: logger).whenComplete { [self] result in
                answered.lock()
                answer = result
                answered.unlock(withValue: 1)
            }
        }
        guard answered.lock(whenValue: 1, timeoutSeconds: Self.answerLimitSeconds) else {
            // A late answer may still come; it is not read: this pipeline
            // sends nothing more, and its transaction fails.
            silent = true
            return (.failure(ChatError.storage("no answer within \(Int(Self.answerLimitSeconds)) s")), nil)
        }
        let result = answer ?? .failure(ChatError.storage("no answer"))
        let earlier = firstFailure
        answered.unlock()
        return (result, earlier)
    }
}
