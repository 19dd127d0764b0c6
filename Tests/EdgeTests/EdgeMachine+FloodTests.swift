import ChatWire
import Foundation
import IPCMessages
import Testing

@testable import udpchat_edge

/// Established sessions first: datagrams that are not a known session's
/// (handshakes, mostly) wait until those read with them are answered, in
/// a bounded queue, and go to udpchat-keys together.
extension EdgeMachineTests {
    static func floodSource(_ n: Int) -> PeerAddress { PeerAddress(ip: "198.18.0.\(n % 250 + 1)", port: 20_000 + n)! }

    @Test func aKnownSessionIsAnsweredBeforeTheHandshakesReadWithIt() throws {
        var client = Client()
        var h = try Harness.serving(client, ["HANDSHAKES_PER_SOURCE": "1000"])
        // One read: twenty handshakes, then the session's HELLO.
        for n in 0..<20 { h.machine.receive(Self.sessionInit, from: Self.floodSource(n), h.time, &h.out) }
        h.machine.receive(client.datagram(.hello), from: Self.clientAddress, h.time, &h.out)
        #expect(h.takeKeysCalls().isEmpty)
        let answered = h.takeDatagrams()
        #expect(answered.count == 1 && answered.first?.address == Self.clientAddress)
        #expect(answered.first.flatMap { client.open($0.bytes) } != nil)

        // Then the handshakes, a budget at a time, all to keys in one request.
        #expect(h.machine.readQueued(budget: 8, h.time, &h.out))
        #expect(h.out.keysCalls.count == 8)
        #expect(!h.machine.readQueued(budget: 100, h.time, &h.out))
        var window = HandshakeWindow()
        let requests = window.add(h.out.keysRequests().handshakes, now: 0)
        #expect(requests.count == 1)
        #expect(requests.first?.request.newSessions.sessions.count == 20)
        #expect(requests.first?.handshakes.count == 20)
        #expect(h.machine.handshakesInFlight == 20)
    }

    /// keys' answer to a handshake waits too: the session's HELLO read
    /// after it is answered first.
    @Test func keysAnswerToAHandshakeWaitsBehindASessionsDatagram() throws {
        var client = Client()
        var h = try Harness.serving(client, ["HANDSHAKES_PER_SOURCE": "1000"])
        h.receive(Self.sessionInit, from: Self.floodSource(1))
        let call = try #require(h.takeKeysCalls().first)
        var made = IPCKeysResponse()
        made.newSession.sessionID = SecureRandom.identifier()
        made.newSession.sessionKey = Data(SessionCipher.random().keyBytes)
        h.machine.keysAnswered(call.call, .success(made), h.time, &h.out)
        #expect(h.takeDatagrams().isEmpty)
        #expect(h.machine.handshakesInFlight == 1)

        h.machine.receive(client.datagram(.hello), from: Self.clientAddress, h.time, &h.out)
        #expect(h.takeDatagrams().map(\.address) == [Self.clientAddress])
        #expect(!h.machine.readQueued(budget: 1, h.time, &h.out))
        let reply = try #require(h.takeDatagrams().first)
        #expect(reply.address == Self.floodSource(1))
        guard case .sessionInitReply(let answered)? = try? Envelope.decodeResponse(reply.bytes) else {
            Issue.record("the handshake was not answered")
            return
        }
        #expect(answered.sessionId == made.newSession.sessionID)
        #expect(h.machine.handshakesInFlight == 0)
    }

    /// A flood beyond the queue is dropped unanswered: the memory it may
    /// hold is bounded in datagrams and in bytes.
    @Test func aFloodBeyondTheQueueIsDroppedUnanswered() throws {
        var h = try Harness(["HANDSHAKES_PER_SOURCE": "1000"])
        for n in 0..<(EdgeMachine.maxQueuedDatagrams + 100) { h.machine.receive(Self.sessionInit, from: Self.floodSource(n), h.time, &h.out) }
        #expect(h.machine.queued.count == EdgeMachine.maxQueuedDatagrams)
        #expect(h.out.isEmpty)
        while h.machine.readQueued(budget: 64, h.time, &h.out) {}
        #expect(h.machine.queued.isEmpty && h.machine.queuedBytes == 0)
        // Past the in-flight cap the rest were answered "too many handshakes".
        #expect(h.out.keysCalls.count == EdgeMachine.maxHandshakesInFlight)
        let refusals = h.out.datagrams.compactMap { try? Envelope.decodeResponse($0.bytes) }
        #expect(refusals.count == EdgeMachine.maxQueuedDatagrams - EdgeMachine.maxHandshakesInFlight)
        #expect(refusals.allSatisfy { $0 == .serverError(message: ProtocolText.packetFailurePrefix + "too many handshakes in progress; try again") })

        var big = try Harness(["BUFFER_SIZE": "65507"])
        let junk = [UInt8](repeating: UInt8(ascii: "x"), count: 60_000)
        for n in 0..<40 { big.machine.receive(junk, from: Self.floodSource(n), big.time, &big.out) }
        #expect(big.machine.queuedBytes <= EdgeMachine.maxQueuedBytes)
        #expect(big.machine.queued.count == EdgeMachine.maxQueuedBytes / junk.count)
    }

    /// A request of several handshakes that fails fails each: every client
    /// hears so, and none is left counted as waiting for keys.
    @Test func aFailedRequestOfSeveralHandshakesAnswersEachAndKeepsNone() throws {
        var h = try Harness(["HANDSHAKES_PER_SOURCE": "1000"])
        for n in 0..<5 { h.machine.receive(Self.sessionInit, from: Self.floodSource(n), h.time, &h.out) }
        _ = h.machine.readQueued(budget: 16, h.time, &h.out)
        var window = HandshakeWindow()
        let requests = window.add(h.out.keysRequests().handshakes, now: 0)
        h.out.keysCalls.removeAll()
        try #require(requests.count == 1 && requests[0].handshakes.count == 5)
        let calls = requests[0].handshakes.map(\.call)
        for (call, answer) in zip(calls, EdgeOutput.keysAnswers(.failure(RPCError(.timeout, "no answer")), for: calls)) {
            h.answerKeys(call, answer)
        }
        let replies = h.takeDatagrams()
        #expect(Set(replies.map(\.address)) == Set((0..<5).map(Self.floodSource)))
        #expect(replies.allSatisfy { (try? Envelope.decodeResponse($0.bytes)).map { if case .serverError = $0 { true } else { false } } == true })
        #expect(h.machine.handshakesInFlight == 0 && h.machine.table.count == 0)
    }

    /// More handshakes than one request may carry go in several.
    @Test func handshakesBeyondOneRequestsLimitGoInSeveral() {
        var out = EdgeOutput()
        let count = HandshakeWindow.largestRequest + 9
        for n in 0..<count {
            out.keysCalls.append((.newSession(clientKey: [UInt8(n % 256)]), .newSession(request: Request(address: Self.floodSource(n), size: 1))))
        }
        var window = HandshakeWindow()
        let requests = window.add(out.keysRequests().handshakes, now: 0)
        #expect(requests.map(\.handshakes.count) == [HandshakeWindow.largestRequest, 9])
        #expect(requests.map(\.request.newSessions.sessions.count) == [HandshakeWindow.largestRequest, 9])
        #expect(requests[1].request.newSessions.sessions.first?.clientKeyDer == Data([UInt8(HandshakeWindow.largestRequest % 256)]))
    }

    /// keys' answer to several handshakes reaches each, in order; a
    /// failure of the request, or an answer without one result each, is
    /// every handshake's.
    @Test func theAnswerToSeveralHandshakesReachesEach() throws {
        let calls = (0..<3).map { n in KeysCall.newSession(request: Request(address: Self.floodSource(n), size: 1)) }
        var batch = IPCKeysResponse()
        batch.newSessions.results = (0..<3).map { n in
            var one = IPCKeysResponse()
            one.newSession.sessionID = "s\(n)"
            return one
        }
        let each = EdgeOutput.keysAnswers(.success(batch), for: calls)
        #expect(each.map { (try? $0.get())?.newSession.sessionID } == ["s0", "s1", "s2"])

        let failed = EdgeOutput.keysAnswers(.failure(RPCError(.timeout, "no answer")), for: calls)
        #expect(failed.count == 3 && failed.allSatisfy { if case .failure(let e) = $0 { e.code == .timeout } else { false } })

        batch.newSessions.results.removeLast()
        let short = EdgeOutput.keysAnswers(.success(batch), for: calls)
        #expect(short.count == 3 && short.allSatisfy { (try? $0.get())?.newSessions.results.count == 2 })
    }
}
