import ChatWire
import Testing

@testable import udpchat_edge

@Suite struct SessionTableTests {
    static func session(_ id: String, state: EdgeSession.State = .handshake, user: String? = nil, lastSeen: UInt64 = 0) -> EdgeSession {
        EdgeSession(
            id: id, cipher: SessionCipher.random(), wrappedKey: [], keyDigest: [], persisted: false, state: state,
            address: PeerAddress(ip: "127.0.0.1", port: 9)!, lastSeen: lastSeen, lastSeenWall: 0,
            replay: SessionReplay(), userId: user)
    }

    @Test func pendingHandshakesAreBoundedOldestFirst() {
        var table = SessionTable(maxPending: 3)
        var forgotten: [SessionTable.Index] = []
        var added: [SessionTable.Index] = []
        for i in 0..<5 {
            let result = table.addPending(Self.session("s\(i)"), source: "192.0.2.1")
            added.append(result.added)
            forgotten += result.forgotten
        }
        #expect(table.count == 3 && table.pendingCount == 3)
        #expect(table[id: "s0"] == nil && table[id: "s1"] == nil && table[id: "s4"] != nil)
        #expect(forgotten == [added[0], added[1]])
    }

    @Test func authenticatedSessionsAreNeverEvictedByHandshakes() {
        var table = SessionTable(maxPending: 2)
        let a = table.addPending(Self.session("a"), source: "192.0.2.1").added
        table.update(a) { $0.state = .active }
        for i in 0..<10 { table.addPending(Self.session("p\(i)"), source: "192.0.2.1") }
        #expect(table[id: "a"] != nil && table.pendingCount == 2 && table.count == 3)
    }

    @Test func indexesStayWithTheirSessionAndAreReusedOnlyAfterRemoval() {
        var table = SessionTable(maxPending: 10)
        let a = table.addRestored(Self.session("a", state: .restored), source: "192.0.2.1")
        let b = table.addRestored(Self.session("b", state: .restored), source: "192.0.2.1")
        #expect(table.index(of: "a") == a && table.index(of: "b") == b && a != b)
        table.remove(a)
        #expect(table[a] == nil && table.index(of: "a") == nil && table[id: "b"]?.id == "b")
        let c = table.addRestored(Self.session("c", state: .restored), source: "192.0.2.1")
        #expect(c == a && table[c]?.id == "c" && table.count == 2)
    }

    @Test func idleSessionsAreFoundByTheirLastPacket() {
        var table = SessionTable(maxPending: 10)
        let old = table.addRestored(Self.session("old", state: .active, lastSeen: 5), source: "192.0.2.1")
        _ = table.addRestored(Self.session("new", state: .active, lastSeen: 50), source: "192.0.2.1")
        #expect(table.idle(since: 10) == [old])
    }

    /// Sessions are counted by source and by whether a user is logged in,
    /// through every way in and out (what the capacity limits read).
    @Test func sessionsAreCountedBySourceAndLogin() {
        var table = SessionTable(maxPending: 10)
        let a = table.addPending(Self.session("a"), source: "192.0.2.1").added
        let b = table.addPending(Self.session("b"), source: "192.0.2.1").added
        let c = table.addRestored(Self.session("c", state: .restored, user: "u1"), source: "2001:db8::/64")
        #expect(table.sessions(from: "192.0.2.1") == 2 && table.sessions(from: "2001:db8::/64") == 1)
        #expect(table.sessions(from: "198.51.100.1") == 0)
        #expect(table.anonymousCount == 2)
        table.update(a) { $0.userId = "u2" }
        #expect(table.anonymousCount == 1)
        table.update(c) { $0.userId = nil }
        #expect(table.anonymousCount == 2)
        table.remove(b)
        #expect(table.sessions(from: "192.0.2.1") == 1 && table.anonymousCount == 1)
        table.remove(a)
        table.remove(c)
        #expect(table.sessions(from: "192.0.2.1") == 0 && table.sessions(from: "2001:db8::/64") == 0 && table.anonymousCount == 0)
        // A slot used again counts for its new source only.
        _ = table.addPending(Self.session("d"), source: "198.51.100.1")
        #expect(table.sessions(from: "198.51.100.1") == 1 && table.sessions(from: "192.0.2.1") == 0)
    }

    @Test func anonymousSessionsAreFoundByTheirSilence() {
        var table = SessionTable(maxPending: 10)
        let quiet = table.addRestored(Self.session("quiet", state: .active, lastSeen: 5), source: "x")
        _ = table.addRestored(Self.session("user", state: .active, user: "u", lastSeen: 5), source: "x")
        _ = table.addRestored(Self.session("recent", state: .active, lastSeen: 50), source: "x")
        #expect(table.anonymousIdle(since: 10) == [quiet])
    }
}
