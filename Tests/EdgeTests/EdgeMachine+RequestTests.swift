import ChatWire
import Foundation
import IPCMessages
import Testing

@testable import udpchat_edge

/// Requests through the machine: errors, rates, writes the store did not
/// answer, repeated requests, restores under way, draining.
extension EdgeMachineTests {
    @Test func anErrorWithoutAUserLeavesTheSessionsUserAsItWas() throws {
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, user: "u1", cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
        h.receive(client.datagram(.login(email: "someone@example.com", password: "wrong")))
        let call = try h.nextRequest()
        // A login held back by its throttle, before the operation: the store does not say who the user is.
        h.answerStore(call.call) { response in
            response.error.message = "Too many failed logins for this account; try again in 60 s."
            response.userUnknown = true
        }
        let index = try #require(h.machine.table.index(of: client.sessionId))
        #expect(h.machine.table[index]?.userId == "u1")
        #expect(h.machine.delivery.sessions[index]?.userId == "u1")
        // An error from the operation itself does say: here, nobody is logged in (a LOGOUT that
        // was carried out, its answer lost, sent again).
        h.receive(client.datagram(.logout))
        let again = try h.nextRequest()
        h.answerStore(again.call) { $0.error.message = "Not logged in" }
        #expect(h.machine.table[index]?.userId == nil)
        #expect(h.machine.delivery.sessions[index]?.userId == nil)
    }

    @Test func aSenderOverItsMessageRateGetsAnErrorAndTheStoreNothing() throws {
        var client = Client()
        var h = try Harness.serving(client, ["MESSAGES_PER_USER": "5"])
        for n in 0..<14 { h.receive(client.datagram(.message(roomId: Self.room, content: "m\(n)"))) }
        // Twice the rate at once: 10 go on (one to the store now, the rest queued behind it), 4 are refused.
        let errors = h.takeDatagrams().compactMap { client.open($0.bytes) }.filter { $0.packet == .error(message: ProtocolText.tooManyMessages) }
        #expect(errors.count == 4)
        var posted = 0
        while let call = h.takeStoreCalls().first(where: { if case .request = $0.call { true } else { false } }) {
            posted += 1
            h.answerStore(call.call) { $0.done = IPCDone() }
        }
        #expect(posted == 10)
        // A second later five more are welcome: no error, and all five reach the store.
        h.advance(milliseconds: 1000)
        for n in 0..<5 { h.receive(client.datagram(.message(roomId: Self.room, content: "later \(n)"))) }
        #expect(h.takeDatagrams().compactMap { client.open($0.bytes) }.isEmpty)
        posted = 0
        while let call = h.takeStoreCalls().first(where: { if case .request = $0.call { true } else { false } }) {
            posted += 1
            h.answerStore(call.call) { $0.done = IPCDone() }
        }
        #expect(posted == 5)
    }

    /// A write the store did not answer is asked again, with the same nonce
    /// (the store carries it out once): a store that committed it and then
    /// went quiet gives its answer to the second asking, and the client
    /// hears nothing of the first.
    @Test func aWriteTheStoreDidNotAnswerIsAskedAgainBeforeTheClientHearsOfIt() throws {
        var client = Client()
        var h = try Harness.serving(client)
        h.receive(client.datagram(.message(roomId: Self.room, content: "once")))
        let first = try h.nextRequest()
        h.machine.storeAnswered(first.call, .failure(RPCError(.timeout, "no answer")), h.time, &h.out)
        #expect(h.takeDatagrams().isEmpty, "the client is not told yet")
        let second = try h.nextRequest()
        #expect(second.request.session.requestNonce == first.request.session.requestNonce)
        h.confirmSent(second.call, id: 7, content: "once")
        let replies = h.takeDatagrams().compactMap { client.open($0.bytes)?.packet }
        #expect(replies.count == 1)
        if case .messageSent(let id, _, _, _)? = replies.first { #expect(id == 7) } else { Issue.record("\(replies)") }
    }

    /// The store answered none of the askings: the client hears so, and
    /// that answer stands. A repeat of the datagram (one that crossed the
    /// error on its way) gets the same error and asks the store nothing:
    /// what the client was told failed is not carried out after all.
    @Test func aWriteTheStoreDidNotAnswerIsNotSentAgainAfterTheClientWasTold() throws {
        var client = Client()
        var h = try Harness.serving(client, ["RPC_TIMEOUT_MS": "3000"])
        let datagram = client.datagram(.message(roomId: Self.room, content: "did it commit?"))
        h.receive(datagram)
        let first = try h.nextRequest()
        #expect(!first.request.session.requestNonce.isEmpty)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        #expect(first.request.session.deadlineUnixMs > now && first.request.session.deadlineUnixMs <= now + 3000)
        h.machine.storeAnswered(first.call, .failure(RPCError(.timeout, "no answer")), h.time, &h.out)
        // The other attempts, then the last question, past its deadline.
        for attempt in 2...EdgeMachine.writeAttempts + 1 {
            let asked = try h.nextRequest()
            #expect(asked.request.session.requestNonce == first.request.session.requestNonce)
            let wallNow = Int64(Date().timeIntervalSince1970 * 1000)
            if attempt > EdgeMachine.writeAttempts {
                #expect(asked.request.session.deadlineUnixMs <= wallNow, "the last question is already late")
            } else {
                #expect(asked.request.session.deadlineUnixMs > wallNow)
            }
            #expect(h.takeDatagrams().isEmpty, "the client is told nothing before the last question is answered")
            h.machine.storeAnswered(asked.call, .failure(RPCError(.timeout, "no answer")), h.time, &h.out)
        }
        let errors = h.takeDatagrams()
        #expect(
            errors.compactMap { client.open($0.bytes) }.map(\.packet) == [
                .error(message: ProtocolText.packetFailurePrefix + "the store did not answer in time")
            ])
        h.receive(datagram)
        #expect(h.takeStoreCalls().isEmpty)
        #expect(h.takeDatagrams().map(\.bytes) == errors.map(\.bytes))
    }

    /// Every attempt went unanswered, but the store had carried one out
    /// (it committed as the edge gave up): the last question learns so, and
    /// the client is told the message was sent, not that it failed.
    @Test func aWriteCommittedAsTheEdgeGaveUpIsReportedAsDone() throws {
        var client = Client()
        var h = try Harness.serving(client, ["RPC_TIMEOUT_MS": "3000"])
        h.receive(client.datagram(.message(roomId: Self.room, content: "late but done")))
        for _ in 1...EdgeMachine.writeAttempts {
            let asked = try h.nextRequest()
            h.machine.storeAnswered(asked.call, .failure(RPCError(.timeout, "no answer")), h.time, &h.out)
        }
        let last = try h.nextRequest()
        h.confirmSent(last.call, id: 9, content: "late but done")
        let replies = h.takeDatagrams().compactMap { client.open($0.bytes)?.packet }
        #expect(replies.count == 1)
        if case .messageSent(let id, _, _, _)? = replies.first { #expect(id == 9) } else { Issue.record("\(replies)") }
    }

    /// A read's reply (a history can fill a datagram) is not kept for a
    /// repeat: the repeat is read again, so a session pins no large replies.
    @Test func aRepeatedReadIsReadAgainNotAnsweredFromMemory() throws {
        var client = Client()
        var h = try Harness.serving(client)
        let datagram = client.datagram(.listMessages(roomId: Self.room))
        for round in 1...3 {
            h.receive(datagram)
            let read = try #require(try? h.nextRequest(), "round \(round)")
            #expect(read.request.listMessages.roomID == Self.room)
            h.answerStore(read.call) { response in
                response.history.roomID = Self.room
                response.history.items = (0..<50).map { n in
                    var item = IPCHistoryItem()
                    item.messageID = Int64(n)
                    item.content = String(repeating: "x", count: 500)
                    return item
                }
            }
            #expect(h.takeDatagrams().compactMap { client.open($0.bytes) }.count == 1)
            let session = try #require(h.machine.table[id: client.sessionId])
            #expect(session.replies.keptBytes == 0, "no reply bytes kept for a read")
        }
    }

    /// A request sent again after hundreds of ACKs (a client under a heavy
    /// broadcast) gets its reply again, not "This nonce was already used".
    @Test func aRequestRepeatedAfterHundredsOfAcknowledgementsIsStillARepeat() throws {
        var client = Client()
        var h = try Harness.serving(client)
        let request = client.datagram(.message(roomId: Self.room, content: "answered?"))
        h.receive(request)
        let call = try h.nextRequest()
        h.confirmSent(call.call, id: 9, content: "answered?")
        let reply = try #require(h.takeDatagrams().first)
        for _ in 0..<(ReplayWindow.defaultCapacity + 10) { h.receive(client.datagram(.ack(msgId: String(repeating: "0", count: 32)))) }
        _ = h.takeDatagrams()
        h.receive(request)
        #expect(h.takeDatagrams().map(\.bytes) == [reply.bytes])
        #expect(h.takeStoreCalls().isEmpty)
    }

    /// A request whose first datagram was lost arrives a second later,
    /// behind hundreds of newer ACKs: it is carried out, not refused as a
    /// replay. A late ACK gets no reply at all.
    @Test func aLateFirstRequestBehindHundredsOfAcknowledgementsIsCarriedOut() throws {
        var client = Client()
        var h = try Harness.serving(client)
        let late = client.datagram(.message(roomId: Self.room, content: "lost once"))
        let lateAck = client.datagram(.ack(msgId: String(repeating: "0", count: 32)))
        for _ in 0..<(ReplayWindow.defaultCapacity + 10) { h.receive(client.datagram(.ack(msgId: String(repeating: "0", count: 32)))) }
        _ = h.takeDatagrams()
        h.receive(late)
        #expect(h.takeDatagrams().isEmpty, "no refusal")
        let call = try h.nextRequest()
        #expect(call.request.postMessage.content == "lost once")
        h.receive(lateAck)
        #expect(h.takeDatagrams().isEmpty && h.takeStoreCalls().isEmpty)
    }

    /// A request datagram never accepted, older than hundreds of newer
    /// requests, is refused as a replay.
    @Test func aRequestOlderThanTheWindowOfRequestsIsRefused() throws {
        var client = Client()
        var h = try Harness.serving(client)
        let stale = client.datagram(.message(roomId: Self.room, content: "replayed"))
        for _ in 0..<(ReplayWindow.defaultCapacity + 10) { h.receive(client.datagram(.hello)) }
        _ = h.takeDatagrams()
        _ = h.takeStoreCalls()
        h.receive(stale)
        let refused = h.takeDatagrams().compactMap { try? Envelope.decodeResponse($0.bytes) }
        #expect(refused.contains { if case .serverError(ProtocolText.nonceReused) = $0 { true } else { false } })
        #expect(!h.takeStoreCalls().contains { if case .request = $0.call { true } else { false } })
    }

    @Test func aDatagramForASessionNotInMemoryWaitsWhileItIsRestored() throws {
        var h = try Harness()
        var client = Client()
        h.receive(client.datagram(.hello))
        let restore = try #require(h.takeStoreCalls().first)
        guard case .restore(let id) = restore.call else {
            Issue.record("expected a restore, got \(restore.call)")
            return
        }
        #expect(id == client.sessionId && h.takeDatagrams().isEmpty)
        h.answerStore(restore.call) { $0.loadedSession = Self.loaded(client, cursor: 0) }
        let unwrap = try #require(h.takeKeysCalls().first)
        var keys = IPCKeysResponse()
        keys.unwrapped.sessionKey = Data(client.cipher.keyBytes)
        h.machine.keysAnswered(unwrap.call, .success(keys), h.time, &h.out)
        let replies = h.takeDatagrams().compactMap { client.open($0.bytes) }
        #expect(replies.map(\.packet) == [.hello(message: ProtocolText.helloMessage)])
    }

    @Test func whileDrainingOnlyAcknowledgementsAreTaken() throws {
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [Self.message(1)])
        let copy = try #require(Self.messages(h.takeDatagrams(), for: client).first)
        h.machine.startDraining()
        #expect(h.machine.drainStatus.unconfirmed == 1)
        h.receive(client.datagram(.hello))
        h.receive(client.datagram(.message(roomId: Self.room, content: "too late")))
        #expect(h.takeDatagrams().isEmpty && h.takeStoreCalls().isEmpty)
        h.receive(client.datagram(.ack(msgId: copy.msgId)))
        #expect(h.machine.drainStatus.unconfirmed == 0)
    }
}
