import IPCMessages
import Testing

@testable import udpchat_edge

/// Handshakes go to udpchat-keys at once while few requests are
/// unanswered, and together once as many are as the window holds.
@Suite struct HandshakeWindowTests {
    static func handshakes(_ range: Range<Int>) -> [HandshakeWindow.Handshake] {
        range.map { n in
            (
                [UInt8(n % 256), UInt8(n / 256)],
                .newSession(request: Request(address: PeerAddress(ip: "198.18.1.1", port: 1000 + n)!, size: 1))
            )
        }
    }

    /// The client keys each request carries, in order.
    static func keys(_ requests: [HandshakeWindow.Sending]) -> [[[UInt8]]] {
        requests.map { sent in
            switch sent.request.op {
            case .newSession(let one)?: [[UInt8](one.clientKeyDer)]
            case .newSessions(let many)?: many.sessions.map { [UInt8]($0.clientKeyDer) }
            default: []
            }
        }
    }

    @Test func unloadedEachHandshakeGoesAtOnceAlone() {
        var window = HandshakeWindow()
        for n in 0..<HandshakeWindow.limit {
            let sent = window.add(Self.handshakes(n..<n + 1), now: 0)
            #expect(Self.keys(sent) == [Self.handshakes(n..<n + 1).map(\.key)])
            // One handshake goes as `new_session`, which every keys understands.
            if case .newSession? = sent.first?.request.op {
            } else {
                Issue.record("a lone handshake went as \(String(describing: sent.first?.request.op))")
            }
            #expect(sent.first?.handshakes.count == 1)
        }
        #expect(window.unanswered == HandshakeWindow.limit && window.waiting.isEmpty)
    }

    @Test func beyondTheLimitHandshakesWaitAndGoTogetherWhenOneIsAnswered() {
        var window = HandshakeWindow()
        for n in 0..<HandshakeWindow.limit { _ = window.add(Self.handshakes(n..<n + 1), now: 0) }
        let base = HandshakeWindow.limit
        #expect(window.add(Self.handshakes(base..<base + 3), now: 0).isEmpty)
        #expect(window.add(Self.handshakes(base + 3..<base + 5), now: 0).isEmpty)
        #expect(window.waiting.count == 5)

        let next = window.answered(now: 0)
        #expect(Self.keys(next) == [Self.handshakes(base..<base + 5).map(\.key)])
        #expect(next.first?.handshakes.count == 5)
        #expect(window.unanswered == HandshakeWindow.limit && window.waiting.isEmpty)

        // Answers with nothing waiting open the window again.
        for _ in 0..<HandshakeWindow.limit { #expect(window.answered(now: 0).isEmpty) }
        #expect(window.unanswered == 0)
        #expect(window.add(Self.handshakes(100..<101), now: 0).count == 1)
    }

    /// Many waiting go in requests of at most the size keys takes, never
    /// more requests at once than the window holds.
    @Test func aBacklogGoesInRequestsOfKeysSizeWithinTheWindow() {
        var window = HandshakeWindow()
        let size = HandshakeWindow.largestRequest
        let total = size * (HandshakeWindow.limit + 1) + 7
        let first = window.add(Self.handshakes(0..<total), now: 0)
        #expect(first.map(\.handshakes.count) == Array(repeating: size, count: HandshakeWindow.limit))
        #expect(window.waiting.count == size + 7)
        #expect(window.answered(now: 0).map(\.handshakes.count) == [size])
        #expect(window.answered(now: 0).map(\.handshakes.count) == [7])
        #expect(window.waiting.isEmpty)
        // Every handshake went once, in the order it came.
        var replay = HandshakeWindow()
        var sent = Self.keys(replay.add(Self.handshakes(0..<total), now: 0)).flatMap { $0 }
        while !replay.waiting.isEmpty { sent += Self.keys(replay.answered(now: 0)).flatMap { $0 } }
        #expect(sent == Self.handshakes(0..<total).map(\.key))
    }

    /// When a request fails whole, the handshakes waiting are handed back
    /// to fail with it, not sent after it; the window opens again.
    @Test func aFailedRequestHandsBackTheHandshakesWaiting() {
        var window = HandshakeWindow()
        for n in 0..<HandshakeWindow.limit { _ = window.add(Self.handshakes(n..<n + 1), now: 0) }
        #expect(window.add(Self.handshakes(50..<53), now: 0).isEmpty)
        #expect(window.failed().map(\.key) == Self.handshakes(50..<53).map(\.key))
        #expect(window.waiting.isEmpty && window.unanswered == HandshakeWindow.limit - 1)
        #expect(Self.keys(window.add(Self.handshakes(60..<61), now: 0)) == [Self.handshakes(60..<61).map(\.key)])
    }

    /// A handshake waits no longer than keys' deadline: those that began to
    /// wait before the cutoff are taken out, oldest first; the younger stay.
    @Test func handshakesWaitingPastTheDeadlineAreTakenOut() {
        var window = HandshakeWindow()
        for n in 0..<HandshakeWindow.limit { _ = window.add(Self.handshakes(n..<n + 1), now: 0) }
        #expect(window.add(Self.handshakes(10..<12), now: 1_000).isEmpty)
        #expect(window.add(Self.handshakes(12..<13), now: 2_000).isEmpty)
        #expect(window.expired(waitingSince: 1_000).isEmpty)
        #expect(window.expired(waitingSince: 1_001).map(\.key) == Self.handshakes(10..<12).map(\.key))
        #expect(window.waiting.map(\.handshake.key) == Self.handshakes(12..<13).map(\.key))
        #expect(window.unanswered == HandshakeWindow.limit)
        // The one left goes when a request is answered.
        #expect(Self.keys(window.answered(now: 0)) == [Self.handshakes(12..<13).map(\.key)])
    }

    /// A keys older than the edge refuses a request of several as invalid:
    /// they go again, first and each alone, and the next ones alone and at
    /// once, until a while has passed and several may go together again.
    @Test func whenKeysRefusesSeveralTogetherTheyGoAloneForAWhile() throws {
        var window = HandshakeWindow()
        for n in 0..<HandshakeWindow.limit - 1 { _ = window.add(Self.handshakes(n..<n + 1), now: 0) }
        let together = window.add(Self.handshakes(10..<13), now: 0)
        try #require(together.count == 1 && together[0].handshakes.count == 3)
        #expect(window.add(Self.handshakes(20..<22), now: 5).isEmpty)

        var refusal = IPCKeysResponse()
        refusal.failure = IPCFailure(RPCError(.invalidRequest, "the request names no operation"))
        #expect(HandshakeWindow.refusesTogether(.success(refusal)))
        let again = window.refusedTogether(together[0].handshakes, now: 10)
        let alone = Array(10..<13) + Array(20..<22)
        #expect(Self.keys(again) == alone.map { [Self.handshakes($0..<$0 + 1)[0].key] })
        #expect(again.allSatisfy { if case .newSession? = $0.request.op { true } else { false } })
        #expect(window.waiting.isEmpty && window.unanswered == 3 + 5)
        // Alone, and not held by the window, until `retryTogether` has passed.
        #expect(window.add(Self.handshakes(30..<32), now: 20).count == 2)
        #expect(window.unanswered == 3 + 5 + 2)
        // After `retryTogether` they wait for the window and go together again.
        let later = 10 + HandshakeWindow.retryTogether
        #expect(window.unanswered >= HandshakeWindow.limit)
        #expect(window.add(Self.handshakes(40..<44), now: later).isEmpty)
        var sent: [HandshakeWindow.Sending] = []
        while sent.isEmpty && window.unanswered > 0 { sent = window.answered(now: later) }
        #expect(sent.map(\.handshakes.count) == [4])
    }

    /// Only a refusal of the request itself sends them alone: an answer
    /// with a result for each, a busy keys or no answer do not.
    @Test func onlyARefusalOfTheRequestSendsThemAlone() {
        var busy = IPCKeysResponse()
        busy.failure = IPCFailure(RPCError(.busy, "as many waiting as it takes"))
        var made = IPCKeysResponse()
        made.newSessions.results = [IPCKeysResponse(), IPCKeysResponse()]
        #expect(!HandshakeWindow.refusesTogether(.success(busy)))
        #expect(!HandshakeWindow.refusesTogether(.success(made)))
        #expect(!HandshakeWindow.refusesTogether(.failure(RPCError(.timeout, "no answer"))))
    }

    /// Only handshakes wait: the other calls to keys go as they are.
    @Test func otherCallsToKeysAreNotHeld() {
        var out = EdgeOutput()
        out.keysCalls.append(
            (.newSession(clientKey: [1]), .newSession(request: Request(address: PeerAddress(ip: "198.18.1.1", port: 9)!, size: 1))))
        var loaded = IPCLoadedSession()
        loaded.sessionID = "s1"
        out.keysCalls.append((IPCKeysRequest(), .unwrap(sessionId: "s1", loaded: loaded)))
        let (handshakes, others) = out.keysRequests()
        #expect(handshakes.map(\.key) == [[1]])
        #expect(others.count == 1)
        if case .unwrap(let id, _)? = others.first?.calls.first {
            #expect(id == "s1")
        } else {
            Issue.record("the unwrap call was not kept apart")
        }
    }
}
