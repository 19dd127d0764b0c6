import ChatWire
import Foundation
import IPCMessages
import Logging
import Ops
import Testing

@testable import udpchat_edge

/// The edge's machine without sockets or sleeps: the test plays the
/// client, udpchat-keys and udpchat-store, and moves the clock.
@Suite struct EdgeMachineTests {
    static let room = "a0000000000000000000000000000001"
    static let clientAddress = PeerAddress(ip: "127.0.0.1", port: 40_000)!

    /// A client of the machine: a session id and key, sealing and opening like the web client.
    struct Client {
        let sessionId = SecureRandom.identifier()
        let cipher = SessionCipher.random()
        var clock: UInt64 = 1_700_000_000_000_000_000

        mutating func datagram(_ packet: ClientPacket) -> [UInt8] {
            clock += 1000
            let nonce = Nonce.client(nanoseconds: clock)
            return Envelope.secure(
                SecureEnvelope(
                    sessionId: sessionId, nonce: Hex.encode(nonce), ciphertext: Hex.encode(cipher.seal(packet.json.serialized(), nonce: nonce)))
            ).encoded()
        }

        func open(_ datagram: [UInt8]) -> ServerPacket.Received? {
            guard case .secure(let secure)? = try? Envelope.decodeResponse(datagram), secure.sessionId == sessionId,
                let nonce = Hex.decode(secure.nonce), let sealed = Hex.decode(secure.ciphertext),
                let plain = cipher.open(sealed, nonce: nonce)
            else { return nil }
            return try? ServerPacket.decode(plain)
        }
    }

    /// A machine on virtual time and what it asked for.
    struct Harness {
        var machine: EdgeMachine
        var time = EdgeTime(monotonic: 5_000_000_000, wall: 1_800_000_000)
        var out = EdgeOutput()

        init(_ settings: [String: String] = [:]) throws {
            let reader = try SettingsReader.load(environment: ["UDPCHAT_ENV_FILE": "/dev/null"].merging(settings) { $1 })
            machine = EdgeMachine(settings: try EdgeSettings(reader), logger: Logger(label: "test"))
        }

        mutating func advance(milliseconds: UInt64) {
            time.monotonic += milliseconds * 1_000_000
            time.wall += Int64(milliseconds / 1000)
            machine.tick(time, &out)
        }

        mutating func receive(_ datagram: [UInt8], from address: PeerAddress = EdgeMachineTests.clientAddress) {
            machine.receive(datagram, from: address, time, &out)
        }

        /// The store calls made so far, taken.
        mutating func takeStoreCalls() -> [(request: IPCStoreRequest, call: StoreCall)] {
            defer { out.storeCalls.removeAll() }
            return out.storeCalls
        }

        mutating func takeKeysCalls() -> [(request: IPCKeysRequest, call: KeysCall)] {
            defer { out.keysCalls.removeAll() }
            return out.keysCalls
        }

        mutating func takeDatagrams() -> [OutboundDatagram] {
            defer { out.datagrams.removeAll() }
            return out.datagrams
        }

        mutating func publish(id: UInt64 = 0, run: String = "run-a", _ kind: (inout IPCEvent) -> Void) {
            var event = IPCEvent()
            event.eventID = id
            event.run = run
            kind(&event)
            machine.published(event, time, &out)
        }

        mutating func mark(_ run: String, _ last: UInt64) {
            publish(run: run) {
                var mark = IPCStreamMark()
                mark.run = run
                mark.lastEventID = last
                $0.mark = mark
            }
        }

        mutating func answerStore(_ call: StoreCall, _ fill: (inout IPCStoreResponse) -> Void) {
            var response = IPCStoreResponse()
            fill(&response)
            machine.storeAnswered(call, .success(response), time, &out)
        }

        /// Starts the machine and answers its load with `sessions` (each with
        /// its key), and the reads of their rooms with `events` (head: the last).
        mutating func start(with sessions: [(IPCLoadedSession, SessionCipher)], events: [IPCRoomEvent]) throws {
            machine.start(time, &out)
            let load = try #require(takeStoreCalls().first { if case .loadPage = $0.call { true } else { false } })
            answerStore(load.call) { response in
                response.loadedSessions.sessions = sessions.map(\.0)
                response.loadedSessions.more = false
            }
            let unwrap = try #require(takeKeysCalls().first)
            var keys = IPCKeysResponse()
            keys.unwrappedKeys.sessionKeys = sessions.map { Data($0.1.keyBytes) }
            machine.keysAnswered(unwrap.call, .success(keys), time, &out)
            answerReads(events)
        }

        /// Answers every read of room events with `events` after the position asked.
        mutating func answerReads(_ events: [IPCRoomEvent]) {
            for call in takeStoreCalls() {
                guard case .read(let roomId, let after) = call.call else { continue }
                answerStore(call.call) { response in
                    var page = IPCRoomEventPage()
                    page.roomID = roomId
                    page.headSeq = events.map(\.seq).max() ?? 0
                    page.events = events.filter { $0.seq > after }
                    response.roomEvents.pages = [page]
                }
            }
        }
    }

    static func loaded(_ client: Client, user: String = "u1", cursor: UInt64, acknowledges: Bool = true, address: String = "127.0.0.1:40000")
        -> IPCLoadedSession
    {
        var loaded = IPCLoadedSession()
        loaded.found = true
        loaded.sessionID = client.sessionId
        loaded.wrappedKey = Data([1, 2, 3])
        loaded.userID = user
        loaded.address = address
        loaded.lastActiveAt = 1_800_000_000 - 5
        loaded.acknowledges = acknowledges
        var position = IPCRoomCursor()
        position.roomID = room
        position.seq = cursor
        loaded.cursors = [position]
        return loaded
    }

    static func message(_ seq: UInt64, id: Int64? = nil) -> IPCRoomEvent {
        var event = IPCRoomEvent()
        event.roomID = room
        event.seq = seq
        var message = IPCMessageEvent()
        message.roomID = room
        message.messageID = id ?? Int64(seq) * 10
        message.userID = "u2"
        message.name = "bob"
        message.content = "message \(seq)"
        message.timestamp = 1
        event.message = message
        return event
    }

    /// Message ids in the datagrams, opened with the client's key.
    static func messages(_ datagrams: [OutboundDatagram], for client: Client) -> [(id: Int64, msgId: String)] {
        datagrams.compactMap { datagram in
            guard let received = client.open(datagram.bytes), case .message(let event) = received.packet, let msgId = received.msgId
            else { return nil }
            return (event.messageId, msgId)
        }
    }

    @Test func aStartingEdgeResumesASessionThatOnlyListensFromItsCursor() throws {
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 3), client.cipher)], events: (1...5).map { Self.message($0) })
        // The session said nothing to this edge: the copy of event 4 goes to the address the store had.
        let first = h.takeDatagrams()
        #expect(first.allSatisfy { $0.address == Self.clientAddress })
        let copies = Self.messages(first, for: client)
        #expect(copies.map(\.id) == [40])
        // Its ACK releases event 5, and the cursor reaches the store in the next report.
        h.receive(client.datagram(.ack(msgId: copies[0].msgId)))
        let second = Self.messages(h.takeDatagrams(), for: client)
        #expect(second.map(\.id) == [50])
        h.receive(client.datagram(.ack(msgId: second[0].msgId)))
        h.advance(milliseconds: 1000)
        let report = try #require(h.takeStoreCalls().first { if case .report = $0.call { true } else { false } })
        let activity = try #require(report.request.touchSessions.sessions.first)
        #expect(activity.sessionID == client.sessionId && activity.acknowledges && activity.address == "127.0.0.1:40000")
        #expect(activity.cursors.map(\.roomID) == [Self.room] && activity.cursors.map(\.seq) == [5])
    }

    @Test func aReportWaitsForTheLastOneAndCarriesTheNewestCursor() throws {
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 2), client.cipher)], events: (1...5).map { Self.message($0) })
        func acknowledgeNext() {
            for copy in Self.messages(h.takeDatagrams(), for: client) { h.receive(client.datagram(.ack(msgId: copy.msgId))) }
        }
        func reports() -> [(request: IPCStoreRequest, call: StoreCall)] {
            h.takeStoreCalls().filter { if case .report = $0.call { true } else { false } }
        }
        acknowledgeNext()  // event 3
        h.advance(milliseconds: 1000)
        let first = reports()
        #expect(first.count == 1 && first.first?.request.touchSessions.sessions.first?.cursors.map(\.seq) == [3])
        // The store has not answered: seconds pass and cursors move, no second report goes out.
        acknowledgeNext()  // event 4
        h.advance(milliseconds: 1000)
        acknowledgeNext()  // event 5
        h.advance(milliseconds: 1000)
        #expect(reports().isEmpty, "a report while the last is still in the store")
        // Answered: the next report carries only the newest cursor.
        h.answerStore(first[0].call) { $0.done = IPCDone() }
        h.advance(milliseconds: 1000)
        let second = reports()
        #expect(second.count == 1 && second.first?.request.touchSessions.sessions.first?.cursors.map(\.seq) == [5])
    }

    @Test func theFirstCopyAfterARestartCarriesTheSameMessageId() throws {
        var client = Client()
        var before = try Harness()
        try before.start(with: [(Self.loaded(client, cursor: 3), client.cipher)], events: (1...4).map { Self.message($0) })
        let first = Self.messages(before.takeDatagrams(), for: client)
        // Another edge (or this one after a restart) resumes from the same cursor.
        var after = try Harness()
        try after.start(with: [(Self.loaded(client, cursor: 3), client.cipher)], events: (1...4).map { Self.message($0) })
        let again = Self.messages(after.takeDatagrams(), for: client)
        #expect(first.count == 1 && again.count == 1 && first[0].msgId == again[0].msgId)
        _ = client.datagram(.hello)
    }

    @Test func missedEventsAndANewStoreRunAreReadFromTheStore() throws {
        var h = try Harness()
        let client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 1), client.cipher)], events: [Self.message(1)])
        h.mark("run-a", 7)
        #expect(h.out.storeCalls.contains { if case .loadPage = $0.call { true } else { false } }, "a first mark: read what came before")
        h.answerStore(.loadPage(after: "", resync: true)) { $0.loadedSessions = IPCLoadedSessions() }
        h.answerReads([Self.message(1)])
        h.publish(id: 8) { $0.room = Self.message(2) }
        #expect(h.takeStoreCalls().isEmpty, "the next event in order: nothing to read")
        h.publish(id: 10) { $0.room = Self.message(4) }  // event 9 (room event 3) was lost
        let calls = h.takeStoreCalls()
        #expect(calls.contains { if case .loadPage = $0.call { true } else { false } })
        #expect(calls.contains { if case .read(Self.room, _) = $0.call { true } else { false } })
        h.answerStore(.loadPage(after: "", resync: true)) { $0.loadedSessions = IPCLoadedSessions() }
        h.mark("run-b", 0)  // the store restarted
        #expect(h.takeStoreCalls().contains { if case .loadPage = $0.call { true } else { false } })
    }

    /// Several stores each publish a stream of their own: interleaved, each
    /// in order, they are no gap; a gap in one of them is read from the
    /// database; a store that starts is a new stream.
    @Test func theStreamsOfSeveralStoresAreFollowedEachByItsOwnNumbers() throws {
        var h = try Harness()
        let client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 1), client.cipher)], events: [Self.message(1)])
        func resynchronised() -> Bool {
            let calls = h.takeStoreCalls()
            for call in calls {
                if case .loadPage = call.call { h.answerStore(call.call) { $0.loadedSessions = IPCLoadedSessions() } }
            }
            return calls.contains { if case .loadPage = $0.call { true } else { false } }
        }
        h.mark("run-a", 7)
        #expect(resynchronised())
        h.mark("run-b", 3)
        #expect(resynchronised(), "a second store: what it published before is read")
        h.publish(id: 8, run: "run-a") { $0.room = Self.message(2) }
        h.publish(id: 4, run: "run-b") { $0.room = Self.message(3) }
        h.publish(id: 9, run: "run-a") { $0.room = Self.message(4) }
        h.mark("run-a", 9)
        h.mark("run-b", 4)
        #expect(!resynchronised(), "two streams interleaved, each in order")
        h.publish(id: 6, run: "run-b") { $0.room = Self.message(5) }  // run-b's event 5 was lost
        #expect(resynchronised())
        h.mark("run-c", 0)
        #expect(resynchronised(), "a store started")
    }

    /// `%H` in EDGE_ID is the host name, so replicas of one container
    /// service (each its own host name) get names of their own from one
    /// setting.
    @Test func anEdgeIdMayNameTheHost() throws {
        let host = EdgeSettings.hostName()
        #expect(!host.isEmpty)
        #expect(EdgeSettings.edgeId("edge-%H", hostName: "c0ffee") == "edge-c0ffee")
        #expect(EdgeSettings.edgeId("edge-1", hostName: "c0ffee") == "edge-1")
        let reader = try SettingsReader.load(environment: ["UDPCHAT_ENV_FILE": "/dev/null", "EDGE_ID": "edge-%H"])
        #expect(try EdgeSettings(reader).edgeId == "edge-" + host)
    }

    /// Another edge heard a session last: this edge lets it go at once, or,
    /// with a request of it under way, once that is answered.
    @Test func aSessionAnotherEdgeHeardLastIsLetGo() throws {
        var h = try Harness(["EDGE_ID": "edge-1"])
        var idle = Client()
        var busy = Client()
        try h.start(with: [(Self.loaded(idle, cursor: 0), idle.cipher), (Self.loaded(busy, cursor: 0), busy.cipher)], events: [])
        func moved(_ client: Client, to edge: String) {
            h.publish {
                var moved = IPCSessionMoved()
                moved.sessionID = client.sessionId
                moved.edge = edge
                $0.sessionMoved = moved
            }
        }
        h.receive(busy.datagram(.message(roomId: Self.room, content: "in flight")))
        let call = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        moved(idle, to: "edge-1")
        #expect(h.machine.table[id: idle.sessionId] != nil, "a move to this edge changes nothing")
        moved(idle, to: "edge-2")
        moved(busy, to: "edge-2")
        #expect(h.machine.table[id: idle.sessionId] == nil)
        #expect(h.machine.table[id: busy.sessionId] != nil, "kept while its request is under way")
        h.answerStore(call.call) { response in
            response.messageSent.messageID = 9
            response.messageSent.roomID = Self.room
            response.messageSent.content = "in flight"
        }
        #expect(busy.open(try #require(h.takeDatagrams().first).bytes) != nil, "its reply still goes out")
        h.advance(milliseconds: 10_001)
        #expect(h.machine.table[id: busy.sessionId] == nil)
        _ = idle.datagram(.hello)
    }

    @Test func aResynchronisationUnwrapsOnlyTheKeysOfSessionsNewToTheEdge() throws {
        var h = try Harness()
        // The new session's id sorts first: the next page must start after the page's last, the known one.
        var known = Client()
        var new = Client()
        if new.sessionId > known.sessionId { swap(&known, &new) }
        try h.start(with: [(Self.loaded(known, cursor: 1), known.cipher)], events: [Self.message(1)])
        h.mark("run-a", 7)
        _ = h.takeStoreCalls()
        h.answerStore(.loadPage(after: "", resync: true)) { response in
            response.loadedSessions.sessions = [Self.loaded(known, cursor: 1), Self.loaded(new, cursor: 1)].sorted { $0.sessionID < $1.sessionID }
            response.loadedSessions.more = true
        }
        let unwrap = try #require(h.takeKeysCalls().first)
        #expect(unwrap.request.unwrapSessionKeys.keys.map(\.sessionID) == [new.sessionId])
        var keys = IPCKeysResponse()
        keys.unwrappedKeys.sessionKeys = [Data(new.cipher.keyBytes)]
        h.machine.keysAnswered(unwrap.call, .success(keys), h.time, &h.out)
        #expect(h.machine.table.index(of: new.sessionId) != nil)
        // The next page starts after the page's last session, whichever it was.
        let next = try #require(h.takeStoreCalls().first { if case .loadPage = $0.call { true } else { false } })
        #expect(next.request.loadSessions.afterSessionID == known.sessionId)
        // A page of sessions all known asks udpchat-keys nothing.
        h.answerStore(next.call) { response in
            response.loadedSessions.sessions = [Self.loaded(known, cursor: 1)]
            response.loadedSessions.more = false
        }
        #expect(h.takeKeysCalls().isEmpty)
    }

    @Test func aForgedDatagramDuringTheLoadDoesNotKeepASessionFromItsBroadcasts() throws {
        var h = try Harness()
        let client = Client()
        h.machine.start(h.time, &h.out)
        let load = try #require(h.takeStoreCalls().first { if case .loadPage = $0.call { true } else { false } })
        // Before the load is answered, a datagram naming the session (ids travel
        // in clear) comes from elsewhere, sealed with a key that is not its.
        let forged = Envelope.secure(
            SecureEnvelope(
                sessionId: client.sessionId, nonce: Hex.encode(Nonce.client(nanoseconds: client.clock + 500)),
                ciphertext: Hex.encode([UInt8](repeating: 7, count: 48)))
        ).encoded()
        h.receive(forged, from: PeerAddress(ip: "127.0.0.9", port: 5555)!)
        let restore = try #require(h.takeStoreCalls().first { if case .restore = $0.call { true } else { false } })
        h.answerStore(restore.call) { $0.loadedSession = Self.loaded(client, cursor: 3) }
        var key = IPCKeysResponse()
        key.unwrapped.sessionKey = Data(client.cipher.keyBytes)
        h.machine.keysAnswered(try #require(h.takeKeysCalls().first).call, .success(key), h.time, &h.out)
        #expect(Self.messages(h.takeDatagrams(), for: client).isEmpty)
        // The load then brings the session with the address its client used
        // (its key is here already: nothing to unwrap).
        h.answerStore(load.call) { response in
            response.loadedSessions.sessions = [Self.loaded(client, cursor: 3)]
            response.loadedSessions.more = false
        }
        #expect(h.takeKeysCalls().isEmpty)
        h.answerReads((1...4).map { Self.message($0) })
        let datagrams = h.takeDatagrams()
        #expect(datagrams.allSatisfy { $0.address == Self.clientAddress })
        #expect(Self.messages(datagrams, for: client).map(\.id) == [40])
    }

    @Test func anErrorWithoutAUserLeavesTheSessionsUserAsItWas() throws {
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, user: "u1", cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
        h.receive(client.datagram(.login(email: "someone@example.com", password: "wrong")))
        let call = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
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
        let again = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        h.answerStore(again.call) { $0.error.message = "Not logged in" }
        #expect(h.machine.table[index]?.userId == nil)
        #expect(h.machine.delivery.sessions[index]?.userId == nil)
    }

    @Test func aSenderOverItsMessageRateGetsAnErrorAndTheStoreNothing() throws {
        var h = try Harness(["MESSAGES_PER_USER": "5"])
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
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
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
        h.receive(client.datagram(.message(roomId: Self.room, content: "once")))
        let first = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        h.machine.storeAnswered(first.call, .failure(RPCError(.timeout, "no answer")), h.time, &h.out)
        #expect(h.takeDatagrams().isEmpty, "the client is not told yet")
        let second = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        #expect(second.request.session.requestNonce == first.request.session.requestNonce)
        h.answerStore(second.call) { response in
            response.messageSent.messageID = 7
            response.messageSent.roomID = Self.room
            response.messageSent.content = "once"
        }
        let replies = h.takeDatagrams().compactMap { client.open($0.bytes)?.packet }
        #expect(replies.count == 1)
        if case .messageSent(let id, _, _, _)? = replies.first { #expect(id == 7) } else { Issue.record("\(replies)") }
    }

    /// The store answered none of the askings: the client hears so, and
    /// that answer stands. A repeat of the datagram (one that crossed the
    /// error on its way) gets the same error and asks the store nothing:
    /// what the client was told failed is not carried out after all.
    @Test func aWriteTheStoreDidNotAnswerIsNotSentAgainAfterTheClientWasTold() throws {
        var h = try Harness(["RPC_TIMEOUT_MS": "3000"])
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
        let datagram = client.datagram(.message(roomId: Self.room, content: "did it commit?"))
        h.receive(datagram)
        let first = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        #expect(!first.request.session.requestNonce.isEmpty)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        #expect(first.request.session.deadlineUnixMs > now && first.request.session.deadlineUnixMs <= now + 3000)
        h.machine.storeAnswered(first.call, .failure(RPCError(.timeout, "no answer")), h.time, &h.out)
        // The other attempts, then the last question, past its deadline.
        for attempt in 2...EdgeMachine.writeAttempts + 1 {
            let asked = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
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
        var h = try Harness(["RPC_TIMEOUT_MS": "3000"])
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
        h.receive(client.datagram(.message(roomId: Self.room, content: "late but done")))
        for _ in 1...EdgeMachine.writeAttempts {
            let asked = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
            h.machine.storeAnswered(asked.call, .failure(RPCError(.timeout, "no answer")), h.time, &h.out)
        }
        let last = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        h.answerStore(last.call) { response in
            response.messageSent.messageID = 9
            response.messageSent.roomID = Self.room
            response.messageSent.content = "late but done"
        }
        let replies = h.takeDatagrams().compactMap { client.open($0.bytes)?.packet }
        #expect(replies.count == 1)
        if case .messageSent(let id, _, _, _)? = replies.first { #expect(id == 9) } else { Issue.record("\(replies)") }
    }

    /// A read's reply (a history can fill a datagram) is not kept for a
    /// repeat: the repeat is read again, so a session pins no large replies.
    @Test func aRepeatedReadIsReadAgainNotAnsweredFromMemory() throws {
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
        let datagram = client.datagram(.listMessages(roomId: Self.room))
        for round in 1...3 {
            h.receive(datagram)
            let read = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } }, "round \(round)")
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
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
        let request = client.datagram(.message(roomId: Self.room, content: "answered?"))
        h.receive(request)
        let call = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        h.answerStore(call.call) { response in
            response.messageSent.messageID = 9
            response.messageSent.roomID = Self.room
            response.messageSent.content = "answered?"
        }
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
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
        let late = client.datagram(.message(roomId: Self.room, content: "lost once"))
        let lateAck = client.datagram(.ack(msgId: String(repeating: "0", count: 32)))
        for _ in 0..<(ReplayWindow.defaultCapacity + 10) { h.receive(client.datagram(.ack(msgId: String(repeating: "0", count: 32)))) }
        _ = h.takeDatagrams()
        h.receive(late)
        #expect(h.takeDatagrams().isEmpty, "no refusal")
        let call = try #require(h.takeStoreCalls().first { if case .request = $0.call { true } else { false } })
        #expect(call.request.postMessage.content == "lost once")
        h.receive(lateAck)
        #expect(h.takeDatagrams().isEmpty && h.takeStoreCalls().isEmpty)
    }

    /// A request datagram never accepted, older than hundreds of newer
    /// requests, is refused as a replay.
    @Test func aRequestOlderThanTheWindowOfRequestsIsRefused() throws {
        var h = try Harness()
        var client = Client()
        try h.start(with: [(Self.loaded(client, cursor: 0), client.cipher)], events: [])
        _ = h.takeDatagrams()
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

    // MARK: - Capacity

    /// A client's SESSION_INIT (the key is never parsed here: keys does that).
    static let sessionInit = Envelope.sessionInitRequest(clientKey: Data(repeating: 7, count: 64).base64EncodedString()).encoded()

    /// Completes a handshake from `address` as keys would; returns the
    /// SERVER_ERROR text when the machine refused it instead.
    static func handshake(_ h: inout Harness, from address: PeerAddress) -> String? {
        h.receive(sessionInit, from: address)
        guard let call = h.takeKeysCalls().first else {
            let replies = h.takeDatagrams()
            guard case .serverError(let error)? = replies.first.flatMap({ try? Envelope.decodeResponse($0.bytes) }) else {
                return "no reply"
            }
            return error
        }
        var made = IPCKeysResponse()
        made.newSession.sessionID = SecureRandom.identifier()
        made.newSession.sessionKey = Data(SessionCipher.random().keyBytes)
        made.newSession.fingerprint = String(repeating: "0", count: 64)
        h.machine.keysAnswered(call.call, .success(made), h.time, &h.out)
        _ = h.takeDatagrams()
        return nil
    }

    @Test func aSourceAtItsSessionLimitGetsAnErrorAndOthersDoNot() throws {
        var h = try Harness(["SESSIONS_PER_SOURCE": "3", "HANDSHAKES_PER_SOURCE": "1000"])
        let crowded = PeerAddress(ip: "192.0.2.7", port: 1000)!
        for _ in 0..<3 { #expect(Self.handshake(&h, from: crowded) == nil) }
        let refused = Self.handshake(&h, from: crowded)
        #expect(refused == ProtocolText.packetFailurePrefix + "too many sessions from your address (3); close some, or wait for them to expire")
        #expect(h.machine.table.count == 3)
        // Another port of the same address is the same source; another address is not.
        #expect(Self.handshake(&h, from: PeerAddress(ip: "192.0.2.7", port: 2000)!) != nil)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "192.0.2.8", port: 1000)!) == nil)
    }

    /// IPv6 sources count by their /64: a host cannot take a new budget per address.
    @Test func ipv6SourcesAreCountedByTheirSlash64() throws {
        var h = try Harness(["SESSIONS_PER_SOURCE": "2", "HANDSHAKES_PER_SOURCE": "1000"])
        #expect(Self.handshake(&h, from: PeerAddress(ip: "2001:db8:1:2::1", port: 1)!) == nil)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "2001:db8:1:2:ffff::9", port: 1)!) == nil)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "2001:db8:1:2::abcd", port: 1)!)?.contains("too many sessions") == true)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "2001:db8:1:3::1", port: 1)!) == nil)
    }

    @Test func atTheSessionOrMemoryLimitNewSessionsAreRefusedAndEstablishedOnesKept() throws {
        var h = try Harness(["MAX_SESSIONS": "4", "HANDSHAKES_PER_SOURCE": "1000"])
        for i in 0..<4 { #expect(Self.handshake(&h, from: PeerAddress(ip: "198.51.100.\(i + 1)", port: 1)!) == nil) }
        let full = Self.handshake(&h, from: PeerAddress(ip: "198.51.100.99", port: 1)!)
        #expect(full?.contains("as many sessions as it takes (4)") == true, "\(full ?? "")")
        #expect(h.machine.table.count == 4)

        var m = try Harness(["EDGE_MEMORY_LIMIT_MB": "64", "HANDSHAKES_PER_SOURCE": "1000"])
        #expect(Self.handshake(&m, from: PeerAddress(ip: "198.51.100.1", port: 1)!) == nil)
        m.machine.memoryInUse = 65 << 20
        #expect(Self.handshake(&m, from: PeerAddress(ip: "198.51.100.2", port: 1)!)?.contains("memory limit") == true)
        #expect(m.machine.table.count == 1)
        m.machine.memoryInUse = 63 << 20
        #expect(Self.handshake(&m, from: PeerAddress(ip: "198.51.100.2", port: 1)!) == nil)
    }

    /// Sessions that never log in are capped in number, and leave memory
    /// after two minutes of silence, which makes room for new ones.
    @Test func sessionsThatNeverLogInAreCappedAndLeaveMemorySoon() throws {
        var h = try Harness(["MAX_ANONYMOUS_SESSIONS": "3", "HANDSHAKES_PER_SOURCE": "1000"])
        for i in 0..<3 { #expect(Self.handshake(&h, from: PeerAddress(ip: "203.0.113.\(i + 1)", port: 1)!) == nil) }
        #expect(Self.handshake(&h, from: PeerAddress(ip: "203.0.113.9", port: 1)!)?.contains("as many sessions") == true)
        h.advance(milliseconds: 119_000)
        #expect(h.machine.table.count == 3)
        h.advance(milliseconds: 11_000)
        #expect(h.machine.table.count == 0)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "203.0.113.9", port: 1)!) == nil)
    }
}
