import ChatWire
import NIOCore

/// New sessions: one for a client that goes on to make requests, or many
/// back to back (`udpchat bench handshakes`).
extension BenchWorker {
    /// A new session for client `index`, on the next socket with room for it.
    func handshake(_ index: Int) async throws -> Void {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            loop.execute { [self] in
                startHandshake(index, keep: true) { result in continuation.resume(with: result.mapError { $0 as any Error }) }
            }
        }
    }

    /// Handshakes back to back, `clients` at once, until the monotonic
    /// time `deadline`: each one finished starts the next on this loop,
    /// with no task between (the bench shares the cores of the servers it
    /// measures). The sessions are checked, then not kept.
    func handshakes(clients: Int, until deadline: UInt64) async throws -> HandshakeTally {
        let promise = loop.makePromise(of: HandshakeTally.self)
        loop.execute { [self] in
            let run = HandshakeRun(clients: clients)
            for _ in 0..<clients { runHandshake(run, until: deadline, promise: promise) }
            if clients == 0 { promise.succeed(run.tally) }
        }
        return try await promise.futureResult.get()
    }

    private func runHandshake(_ run: HandshakeRun, until deadline: UInt64, promise: EventLoopPromise<HandshakeTally>) {
        let began = MonotonicClock.now()
        guard began < deadline else {
            run.running -= 1
            if run.running == 0 { promise.succeed(run.tally) }
            return
        }
        run.started += 1
        startHandshake(run.started, keep: false) { [self] result in
            switch result {
            case .success:
                run.tally.latencies.append(UInt32(min(UInt64(UInt32.max), (MonotonicClock.now() - began) / 1000)))
                runHandshake(run, until: deadline, promise: promise)
            case .failure(let error):
                run.tally.failed += 1
                if run.tally.firstFailure == nil { run.tally.firstFailure = error.description }
                // A refused client waits a moment, as a person would, rather than spin.
                loop.scheduleTask(in: Self.refusalPause) { [self] in runHandshake(run, until: deadline, promise: promise) }
            }
        }
    }

    /// Sends a SESSION_INIT for client `index`; `done` is called once, on
    /// this loop, with the checked reply or why there is none. A `keep`
    /// session is kept for the client's requests.
    private func startHandshake(_ index: Int, keep: Bool, done: @escaping (Result<Void, BenchError>) -> Void) {
        let socket = (placed / perSocket) % sockets.count
        placed += 1
        let session = BenchSession(index: index, socket: socket)
        session.keep = keep
        // Whichever comes first, the reply or the timeout, takes the entry and ends the wait.
        session.handshakeTimer = loop.scheduleTask(in: requestTimeout) { [self] in
            guard let waiting = handshakes[socket].firstIndex(where: { $0.0 === session }) else { return }
            let (_, done) = handshakes[socket].remove(at: waiting)
            done(.failure(BenchError("no SESSION_INIT reply within \(requestTimeout.nanoseconds / 1_000_000) ms")))
        }
        handshakes[socket].append((session, done))
        write(handshake.request, on: socket)
        // A lost handshake is asked for again, as `udpchat` does (each request makes a
        // session on the server; the first reply is the one adopted).
        if let interval = retryInterval {
            session.handshakeRetry = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] task in
                guard handshakes[socket].contains(where: { $0.0 === session }) else {
                    task.cancel()
                    return
                }
                write(handshake.request, on: socket)
            }
        }
    }
}

/// What a run of back-to-back handshakes saw: each one's latency in
/// microseconds, and how many failed (and why the first did).
struct HandshakeTally: Sendable {
    var latencies: [UInt32] = []
    var failed = 0
    var firstFailure: String?
}

/// The state of one worker's back-to-back handshakes: touched only on its
/// loop (hence unchecked).
private final class HandshakeRun: @unchecked Sendable {
    var running: Int
    var started = 0
    var tally = HandshakeTally()

    init(clients: Int) { running = clients }
}
