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
        loaded.cursors = [IPCRoomCursor(roomId: room, seq: cursor)]
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
}
