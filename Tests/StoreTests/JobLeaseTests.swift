import Foundation
import IPCMessages
import Logging
import Testing

@testable import udpchat_store

/// Queued AI jobs are held by one store process at a time, with a lease in
/// the database (several stores share one).
@Suite struct JobLeaseTests {
    /// A job made through the store, held by the store's own run.
    static func queuedJob(_ store: StoreHarness) async throws -> JobRow {
        let (alice, _) = await store.loggedIn("alice@example.com")
        let room = await store.createRoom(alice, "General").roomCreated.roomID
        var request = IPCRequestAI()
        request.roomID = room
        request.content = "rewrite me"
        _ = await store.call(alice, .requestAi(request))
        return try #require(try await store.backend.read { tx in try tx.queuedJobs() }.first)
    }

    @Test(arguments: TestDatabase.available) func aJobIsTakenByAnotherStoreOnlyOnceItsLeaseRanOut(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let job = try await Self.queuedJob(store)
        #expect(job.leasedBy == store.service.aiPolicy.owner.run && job.leaseUntil > job.createdAt)
        // Another store looks while the lease holds: nothing for it.
        let early = try await store.backend.write { tx in
            try tx.claimJobs(run: "other", now: job.leaseUntil - 1, until: job.leaseUntil + 15_000, limit: 10, all: false)
        }
        #expect(early.isEmpty)
        // The holder renews: the lease moves on, and only its own.
        #expect(try await store.backend.write { tx in try tx.renewJobLeases(run: job.leasedBy, jobIds: [job.jobId], until: job.leaseUntil + 5_000) } == 1)
        #expect(try await store.backend.write { tx in try tx.renewJobLeases(run: "other", jobIds: [job.jobId], until: job.leaseUntil + 99_000) } == 0)
        #expect(try await store.backend.write { tx in try tx.renewJobLeases(run: job.leasedBy, jobIds: ["another"], until: job.leaseUntil + 99_000) } == 0)
        // The holder stopped renewing: once the lease ran out, the first store to look takes it, and only that one.
        let late = job.leaseUntil + 5_001
        let taken = try await store.backend.write { tx in try tx.claimJobs(run: "other", now: late, until: late + 15_000, limit: 10, all: false) }
        #expect(taken.map(\.jobId) == [job.jobId] && taken.first?.leasedBy == "other")
        let again = try await store.backend.write { tx in try tx.claimJobs(run: "third", now: late, until: late + 15_000, limit: 10, all: false) }
        #expect(again.isEmpty)
        let stored = try #require(try await store.backend.read { tx in try tx.queuedJobs() }.first)
        #expect(stored.leasedBy == "other" && stored.leaseUntil == late + 15_000)
        // Its new holder let it go (not renewed): once run out, it takes it again itself.
        let later = late + 15_001
        let own = try await store.backend.write { tx in try tx.claimJobs(run: "other", now: later, until: later + 15_000, limit: 10, all: false) }
        #expect(own.map(\.jobId) == [job.jobId])
        // An ended job is taken by nobody.
        _ = try await store.backend.write { tx in try Operations.failJob(tx, jobId: job.jobId, reason: "x.", nowMs: late) }
        let ended = try await store.backend.write { tx in try tx.claimJobs(run: "fourth", now: late + 99_000, until: late, limit: 10, all: true) }
        #expect(ended.isEmpty)
    }

    /// Two stores looking at once on PostgreSQL: while one store's claim is
    /// still open, another takes the other jobs at once, without waiting for
    /// it and without taking the same ones.
    @Test(.enabled(if: TestDatabase.available.contains(.postgres))) func storesTakingJobsAtOnceNeverTakeTheSameOne() async throws {
        let store = try StoreHarness(.postgres)
        try await store.backend.write { tx in
            let user = try tx.insertUser(userId: "u1", email: "alice@example.com", name: "alice", now: 1)
            let room = try tx.insertRoom(roomId: "r1", name: "General", now: 1)
            for index in 0..<10 {
                try tx.insertJob(
                    JobRow(
                        jobId: "job-\(index)", roomRowId: room.rowId, userRowId: user.rowId, sessionId: "s", mode: "improve", request: [],
                        state: "queued", createdAt: 1, deadlineAt: .max, leasedBy: "gone", leaseUntil: 2))
            }
        }
        let location = try #require(store.scratch?.location)
        let later = Int64(Date().timeIntervalSince1970 * 1000) + 60_000
        // Store A's transaction takes four jobs and stays open.
        let first = PostgresLink(location: location, tls: .disable, logger: Logger(label: "test"))
        defer { first.close() }
        let open = try first.connection()
        try first.simple(open, "BEGIN")
        let a = try PostgresTransaction(pipeline: PostgresPipeline(connection: open, logger: Logger(label: "test"))).claimJobs(run: "a", now: later, until: later + 1, limit: 4, all: false)
        // Store B: a statement that waited for A's locks would time out.
        let second = PostgresLink(location: location, tls: .disable, logger: Logger(label: "test"))
        defer { second.close() }
        let b = try second.transaction(readOnly: false) { tx in
            _ = try (tx as! PostgresTransaction).pipeline.run("SET LOCAL lock_timeout = '2s'")
            return try tx.claimJobs(run: "b", now: later, until: later + 1, limit: 10, all: false)
        }
        try first.simple(open, "COMMIT")
        #expect(a.count == 4 && b.count == 6, "\(a.count) + \(b.count)")
        #expect(Set(a.map(\.jobId)).isDisjoint(with: b.map(\.jobId)))
    }
}
