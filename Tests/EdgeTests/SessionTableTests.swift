import Common
import NIOCore
import Testing

@testable import udpchat_edge

@Suite struct SessionTableTests {
    static func session(_ id: String, state: EdgeSession.State = .handshake, user: String? = nil, lastSeen: UInt64 = 0) -> EdgeSession {
        EdgeSession(
            id: id, cipher: SessionCipher.random(), wrappedKey: [], keyDigest: [], persisted: false, state: state,
            address: try! SocketAddress(ipAddress: "127.0.0.1", port: 9), lastSeen: lastSeen, lastSeenWall: 0,
            replay: ReplayWindow(), userId: user)
    }

    @Test func pendingHandshakesAreBoundedOldestFirst() {
        var table = SessionTable(maxPending: 3)
        var forgotten: [SessionTable.Index] = []
        var added: [SessionTable.Index] = []
        for i in 0..<5 {
            let result = table.addPending(Self.session("s\(i)"))
            added.append(result.added)
            forgotten += result.forgotten
        }
        #expect(table.count == 3 && table.pendingCount == 3)
        #expect(table[id: "s0"] == nil && table[id: "s1"] == nil && table[id: "s4"] != nil)
        #expect(forgotten == [added[0], added[1]])
    }

    @Test func authenticatedSessionsAreNeverEvictedByHandshakes() {
        var table = SessionTable(maxPending: 2)
        let a = table.addPending(Self.session("a")).added
        table.update(a) { $0.state = .active }
        for i in 0..<10 { table.addPending(Self.session("p\(i)")) }
        #expect(table[id: "a"] != nil && table.pendingCount == 2 && table.count == 3)
    }

    @Test func indexesStayWithTheirSessionAndAreReusedOnlyAfterRemoval() {
        var table = SessionTable(maxPending: 10)
        let a = table.addRestored(Self.session("a", state: .restored))
        let b = table.addRestored(Self.session("b", state: .restored))
        #expect(table.index(of: "a") == a && table.index(of: "b") == b && a != b)
        table.remove(a)
        #expect(table[a] == nil && table.index(of: "a") == nil && table[id: "b"]?.id == "b")
        let c = table.addRestored(Self.session("c", state: .restored))
        #expect(c == a && table[c]?.id == "c" && table.count == 2)
    }

    @Test func idleSessionsAreFoundByTheirLastPacket() {
        var table = SessionTable(maxPending: 10)
        let old = table.addRestored(Self.session("old", state: .active, lastSeen: 5))
        _ = table.addRestored(Self.session("new", state: .active, lastSeen: 50))
        #expect(table.idle(since: 10) == [old])
    }
}
