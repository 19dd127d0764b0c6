import ChatWire
import IPCMessages
import Testing

@testable import udpchat_store

@Suite struct JobQueueTests {
    static let ms: UInt64 = 1_000_000
    static let a: [UInt8] = [0xA]
    static let b: [UInt8] = [0xB]

    static func job(_ id: String, deadline: UInt64 = 60_000 * ms) -> JobQueue.Job {
        JobQueue.Job(jobId: id, payload: IPCAIJob(), deadline: deadline)
    }

    static func status(free: Int, running: [String] = [], stopping: Bool = false) -> IPCWorkerStatus {
        var status = IPCWorkerStatus()
        status.workerName = "w"
        status.freeSlots = UInt32(free)
        status.runningJobs = running
        status.stopping = stopping
        return status
    }

    static func result(_ id: String, text: String? = nil, failure: String? = nil, handBack: Bool = false) -> IPCJobResult {
        var result = IPCJobResult()
        result.jobID = id
        if let text { result.text = text }
        if let failure {
            result.failure.message = failure
            result.failure.handBack = handBack
        }
        return result
    }

    static func assigned(_ actions: [JobQueue.Action]) -> [(peer: [UInt8], job: String)] {
        actions.compactMap { if case .assign(let peer, let job, _, _, _) = $0 { return (peer, job) } else { return nil } }
    }

    static func failed(_ actions: [JobQueue.Action]) -> [String] {
        actions.compactMap { if case .fail(_, let reason) = $0 { return reason } else { return nil } }
    }

    @Test func jobsWaitForAWorkerAndGoToTheOneWithMostFreeSlots() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 600 * Self.ms)
        #expect(queue.enqueue(Self.job("j1"), now: 0).isEmpty)
        let first = Self.assigned(queue.status(from: Self.a, Self.status(free: 1), now: 1))
        #expect(first.map(\.job) == ["j1"] && first.map(\.peer) == [Self.a])
        _ = queue.status(from: Self.b, Self.status(free: 2), now: 2)
        #expect(Self.assigned(queue.enqueue(Self.job("j2"), now: 3)).map(\.peer) == [Self.b])
        // a has used its only slot (not yet confirmed): j3 goes to b too.
        #expect(Self.assigned(queue.enqueue(Self.job("j3"), now: 4)).map(\.peer) == [Self.b])
        // Nobody has room now.
        #expect(Self.assigned(queue.enqueue(Self.job("j4"), now: 5)).isEmpty && queue.pending.count == 1)
    }

    @Test func aSilentWorkersJobsGoToAnother() {
        var queue = JobQueue(leaseDuration: 10_000 * Self.ms, workerTimeout: 600 * Self.ms)
        _ = queue.status(from: Self.a, Self.status(free: 1), now: 0)
        _ = queue.enqueue(Self.job("j1"), now: 0)
        _ = queue.status(from: Self.a, Self.status(free: 0, running: ["j1"]), now: 100 * Self.ms)
        _ = queue.status(from: Self.b, Self.status(free: 1), now: 700 * Self.ms)
        let actions = queue.tick(now: 701 * Self.ms)
        #expect(actions.contains { if case .dropped = $0 { return true } else { return false } })
        #expect(Self.assigned(actions).map(\.peer) == [Self.b])
    }

    @Test func aLeaseTheWorkerNeverConfirmsExpires() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 60_000 * Self.ms)
        _ = queue.status(from: Self.a, Self.status(free: 1), now: 0)
        _ = queue.enqueue(Self.job("j1"), now: 0)
        // a keeps reporting, but never lists j1: the assignment was lost.
        _ = queue.status(from: Self.a, Self.status(free: 1), now: 900 * Self.ms)
        #expect(Self.assigned(queue.tick(now: 999 * Self.ms)).isEmpty)
        #expect(Self.assigned(queue.tick(now: 1001 * Self.ms)).map(\.job) == ["j1"])
    }

    @Test func confirmedLeasesAreExtendedByStatus() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 60_000 * Self.ms)
        _ = queue.status(from: Self.a, Self.status(free: 1), now: 0)
        _ = queue.enqueue(Self.job("j1"), now: 0)
        for t in stride(from: 500, through: 5000, by: 500) {
            _ = queue.status(from: Self.a, Self.status(free: 0, running: ["j1"]), now: UInt64(t) * Self.ms)
            #expect(queue.tick(now: UInt64(t) * Self.ms + 1).isEmpty)
        }
        #expect(queue.leases["j1"] != nil)
    }

    @Test func theFirstResultEndsTheJobAndLaterOnesAreDuplicates() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 600 * Self.ms)
        _ = queue.status(from: Self.a, Self.status(free: 1), now: 0)
        _ = queue.enqueue(Self.job("j1"), now: 0)
        #expect(queue.result(from: Self.a, Self.result("j1", text: "hello"), now: 1).0 == .complete(jobId: "j1", text: "hello"))
        #expect(queue.result(from: Self.b, Self.result("j1", text: "again"), now: 2).0 == .duplicate)
        queue.ended("j1")
        #expect(queue.result(from: Self.a, Self.result("j1", text: "late"), now: 3).0 == .duplicate)
        #expect(queue.openJobs == 0)
    }

    @Test func aSlowWorkerWhoseJobWasTakenOverStillEndsItOnce() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 600 * Self.ms)
        _ = queue.status(from: Self.a, Self.status(free: 1), now: 0)
        _ = queue.enqueue(Self.job("j1"), now: 0)
        _ = queue.status(from: Self.b, Self.status(free: 1), now: 700 * Self.ms)
        _ = queue.tick(now: 701 * Self.ms)  // a went silent; b has j1 now
        #expect(queue.result(from: Self.a, Self.result("j1", text: "slow"), now: 800 * Self.ms).0 == .complete(jobId: "j1", text: "slow"))
        #expect(queue.result(from: Self.b, Self.result("j1", text: "fast"), now: 900 * Self.ms).0 == .duplicate)
    }

    @Test func handedBackJobsAreQueuedAgainWithoutCountingAnAttempt() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 600 * Self.ms, maxAttempts: 1)
        _ = queue.status(from: Self.a, Self.status(free: 1), now: 0)
        _ = queue.enqueue(Self.job("j1"), now: 0)
        let (disposition, actions) = queue.result(from: Self.a, Self.result("j1", failure: "busy", handBack: true), now: 1)
        #expect(disposition == .handedBack)
        #expect(Self.assigned(actions).map(\.job) == ["j1"])
    }

    @Test func lateJobsFailWithAReasonThatSaysWhy() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 600 * Self.ms, maxAttempts: 1)
        _ = queue.enqueue(Self.job("never", deadline: 100 * Self.ms), now: 0)
        #expect(Self.failed(queue.tick(now: 100 * Self.ms)) == ["no AI worker took the job in time (is udpchat-ai running?)."])
        _ = queue.status(from: Self.a, Self.status(free: 1), now: 200 * Self.ms)
        _ = queue.enqueue(Self.job("lost"), now: 200 * Self.ms)
        #expect(Self.failed(queue.tick(now: 900 * Self.ms)) == ["the AI worker stopped answering 1 times."])
    }

    @Test func withNoWorkerAJobFailsAfterTheSilenceLimitNotItsDeadline() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 600 * Self.ms)
        _ = queue.enqueue(Self.job("j1", deadline: 120_000 * Self.ms), now: 0)
        // A worker starting now would report within the silence limit.
        #expect(queue.tick(now: 599 * Self.ms).isEmpty && queue.pending.count == 1)
        #expect(Self.failed(queue.tick(now: 600 * Self.ms)) == [JobQueue.noWorker])
        #expect(queue.openJobs == 0)
    }

    @Test func aJobWaitsWhileAWorkerIsBusyAndFailsSoonAfterTheLastWorkerGoes() {
        var queue = JobQueue(leaseDuration: 10_000 * Self.ms, workerTimeout: 600 * Self.ms)
        _ = queue.status(from: Self.a, Self.status(free: 0), now: 0)
        _ = queue.enqueue(Self.job("j1"), now: 0)
        // a is full but alive: j1 waits well past the silence limit.
        for t in stride(from: 500, through: 5000, by: 500) {
            _ = queue.status(from: Self.a, Self.status(free: 0), now: UInt64(t) * Self.ms)
            #expect(Self.failed(queue.tick(now: UInt64(t) * Self.ms + 1)).isEmpty)
        }
        // a goes silent at 5 s: once it is dropped, nothing will take j1.
        #expect(Self.failed(queue.tick(now: 5_599 * Self.ms)).isEmpty)
        #expect(Self.failed(queue.tick(now: 5_601 * Self.ms)) == [JobQueue.noWorker])
    }

    @Test func aStoppingWorkerCountsAsNone() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 600 * Self.ms)
        _ = queue.status(from: Self.a, Self.status(free: 4, stopping: true), now: 0)
        _ = queue.enqueue(Self.job("j1"), now: 0)
        _ = queue.status(from: Self.a, Self.status(free: 4, stopping: true), now: 500 * Self.ms)
        #expect(Self.failed(queue.tick(now: 600 * Self.ms)) == [JobQueue.noWorker])
    }

    @Test func stoppingWorkersGetNoJobs() {
        var queue = JobQueue(leaseDuration: 1000 * Self.ms, workerTimeout: 600 * Self.ms)
        _ = queue.status(from: Self.a, Self.status(free: 4, stopping: true), now: 0)
        #expect(Self.assigned(queue.enqueue(Self.job("j1"), now: 0)).isEmpty)
    }
}

@Suite struct AIRateLimiterTests {
    @Test func perUserAndPerRoomBucketsRefillOverAMinute() {
        var limiter = AIRateLimiter(perUserPerMinute: 2, perRoomPerMinute: 3)
        #expect(limiter.admit(user: "u1", room: "r", now: 0) == nil)
        #expect(limiter.admit(user: "u1", room: "r", now: 1) == nil)
        #expect(limiter.admit(user: "u1", room: "r", now: 2)?.contains("2 AI requests") == true)
        #expect(limiter.admit(user: "u2", room: "r", now: 3) == nil)
        #expect(limiter.admit(user: "u3", room: "r", now: 4)?.contains("this room") == true)
        // Thirty seconds refill half a minute's allowance: one request for u1.
        #expect(limiter.admit(user: "u1", room: "r2", now: 30_000_000_000) == nil)
        #expect(limiter.admit(user: "u1", room: "r2", now: 30_000_000_001) != nil)
    }
}
