import ChatWire
import IPCMessages
import Logging
import Synchronization
import Testing
import TestSupport

@testable import udpchat_ai

/// A model that answers after a pause and counts its calls.
final class FakeModel: ChatModel {
    let calls = Atomic<Int>(0)
    let pause: Duration
    init(pause: Duration = .zero) { self.pause = pause }
    var summary: String { "fake" }
    func reply(to messages: [ChatMessage], limits: CallLimits) async throws(AIFailure) -> String {
        calls.add(1, ordering: .relaxed)
        do {
            try await Task.sleep(for: pause)
        } catch {
            throw ChatError.model("cancelled")
        }
        return "alice: a reply"
    }
}

/// What the worker sent to the store.
final class Outbox: Sendable {
    let messages = Mutex<[IPCWorkerMessage]>([])
    func record(_ body: [UInt8]) {
        if let message = try? IPCWorkerMessage(serializedBytes: body) { messages.withLock { $0.append(message) } }
    }
    var results: [IPCJobResult] {
        messages.withLock { $0.compactMap { if case .result(let r)? = $0.kind { return r } else { return nil } } }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct WorkerTests {
    static func assignment(_ id: String) -> [UInt8] {
        var message = IPCDispatcherMessage()
        message.assignment.jobID = id
        message.assignment.lease = 1
        message.assignment.remainingMs = 10_000
        message.assignment.job.userName = "alice"
        return try! message.serializedBytes()
    }

    static func worker(_ model: FakeModel, _ outbox: Outbox, concurrency: Int = 1, clock: any ServiceClock = SystemClock()) -> Worker {
        Worker(
            options: .init(
                name: "test", concurrency: concurrency, heartbeat: .seconds(1),
                limits: CallLimits(firstToken: .seconds(5), total: .seconds(5))),
            model: model, clock: clock, logger: Logger(label: "test")
        ) { outbox.record($0) }
    }

    /// `/readyz` of a worker: ready while the store was heard within three
    /// heartbeats, by the worker's clock.
    @Test func theStoreCountsAsGoneAfterThreeSilentHeartbeatsAndBackWhenHeard() {
        let clock = ManualClock()
        let worker = Self.worker(FakeModel(), Outbox(), clock: clock)
        #expect(worker.storeResponds)
        clock.advance(.milliseconds(2_999))
        #expect(worker.storeResponds)
        clock.advance(.milliseconds(2))
        #expect(!worker.storeResponds)
        var heartbeat = IPCDispatcherMessage()
        heartbeat.heartbeat = IPCDispatcherHeartbeat()
        worker.received(try! heartbeat.serializedBytes())
        #expect(worker.storeResponds)
    }

    /// Waits for `condition`, at most 30 s (a bound for a stuck worker,
    /// far above what a loaded machine takes).
    static func waitFor(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    }

    @Test func aJobsCleanedReplyGoesBackAndIsSentAgainUntilAccepted() async throws {
        let model = FakeModel()
        let outbox = Outbox()
        let worker = Self.worker(model, outbox)
        worker.received(Self.assignment("j1"))
        try await Self.waitFor { !outbox.results.isEmpty }
        #expect(outbox.results.first?.text == "a reply")
        // The store asks again (it restarted): the result is repeated, the model not called again.
        worker.received(Self.assignment("j1"))
        #expect(outbox.results.count == 2 && outbox.results.last?.text == "a reply")
        #expect(model.calls.load(ordering: .relaxed) == 1)
    }

    @Test func aJobBeyondTheFreeSlotsIsHandedBack() async throws {
        let model = FakeModel(pause: .milliseconds(500))
        let outbox = Outbox()
        let worker = Self.worker(model, outbox, concurrency: 1)
        worker.received(Self.assignment("j1"))
        worker.received(Self.assignment("j2"))
        let handedBack = outbox.results.first
        #expect(handedBack?.jobID == "j2" && handedBack?.failure.handBack == true)
        try await Self.waitFor { outbox.results.count == 2 }
        #expect(outbox.results.last?.jobID == "j1" && outbox.results.last?.text == "a reply")
    }

    @Test func drainingHandsBackWhatIsStillRunning() async throws {
        let model = FakeModel(pause: .seconds(10))
        let outbox = Outbox()
        let worker = Self.worker(model, outbox)
        worker.received(Self.assignment("j1"))
        try await Self.waitFor { model.calls.load(ordering: .relaxed) == 1 }
        await worker.drain(limit: .milliseconds(100))
        #expect(outbox.results.last?.jobID == "j1" && outbox.results.last?.failure.handBack == true)
        let statuses = outbox.messages.withLock { $0.compactMap { if case .status(let s)? = $0.kind { return s } else { return nil } } }
        #expect(statuses.last?.stopping == true)
    }
}
