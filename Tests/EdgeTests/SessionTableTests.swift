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
        for i in 0..<5 { table.addPending(Self.session("s\(i)")) }
        #expect(table.count == 3 && table.pendingCount == 3)
        #expect(table["s0"] == nil && table["s1"] == nil && table["s4"] != nil)
    }

    @Test func authenticatedSessionsAreNeverEvictedByHandshakes() {
        var table = SessionTable(maxPending: 2)
        table.addPending(Self.session("a"))
        table.update("a") { $0.state = .active }
        for i in 0..<10 { table.addPending(Self.session("p\(i)")) }
        #expect(table["a"] != nil && table.pendingCount == 2 && table.count == 3)
    }

    @Test func theUserIndexFollowsLoginAndLogout() {
        var table = SessionTable(maxPending: 10)
        table.addPending(Self.session("a"))
        table.addRestored(Self.session("b", state: .restored, user: "u1"))
        table.update("a") { $0.userId = "u1" }
        #expect(table.sessions(ofUser: "u1") == ["a", "b"])
        table.update("a") { $0.userId = "u2" }
        #expect(table.sessions(ofUser: "u1") == ["b"] && table.sessions(ofUser: "u2") == ["a"])
        table.remove("b")
        #expect(table.sessions(ofUser: "u1").isEmpty)
    }

    @Test func idleAndDirtySessions() {
        var table = SessionTable(maxPending: 10)
        table.addRestored(Self.session("old", state: .active, lastSeen: 5))
        table.addRestored(Self.session("new", state: .active, lastSeen: 50))
        #expect(table.idle(since: 10) == ["old"])
        table.update("new") { session in
            session.dirty = true
            session.persisted = true
        }
        #expect(table.takeDirty().map(\.id) == ["new"])
        #expect(table.takeDirty().isEmpty)
    }
}

@Suite struct TranslationTests {
    @Test func localPacketsDoNotGoToTheStore() {
        #expect(Translation.storeOperation(for: .hello) == nil)
        #expect(Translation.storeOperation(for: .ack(msgId: "m")) == nil)
        guard case .requestAi(let ai)? = Translation.storeOperation(for: .aiMessage(roomId: "r", content: "draft")) else {
            Issue.record("AI_MESSAGE goes to the store")
            return
        }
        #expect(ai.roomID == "r" && ai.content == "draft")
    }

    @Test func mergeSendsOnlyADigestOfTheOldKey() throws {
        let key = Hex.encode([UInt8](repeating: 7, count: 32))
        guard case .mergeSession(let merge)? = Translation.storeOperation(for: .mergeSession(oldSessionId: "s", oldSessionKey: key)) else {
            Issue.record("expected a merge")
            return
        }
        #expect(merge.oldKeyDigest.count == 32 && !Hex.encode([UInt8](merge.oldKeyDigest)).contains(key))
        guard case .mergeSession(let bad)? = Translation.storeOperation(for: .mergeSession(oldSessionId: "s", oldSessionKey: "XYZ")) else {
            return
        }
        #expect(bad.oldKeyDigest.isEmpty)
    }

    @Test func storeAnswersBecomeTheProtocolsPackets() {
        var response = IPCStoreResponse()
        var status = IPCStatusReply()
        status.sessionID = "s"
        response.status = status
        #expect(Translation.reply(to: response, sessionId: "s") == .status(sessionId: "s", user: .empty))
        status.loggedOut = true
        response.status = status
        #expect(Translation.reply(to: response, sessionId: "s") == .status(sessionId: "s", user: .null))
        response.pleaseLogin = IPCPleaseLogin()
        response.pleaseLogin.email = "a@b.co"
        #expect(
            Translation.reply(to: response, sessionId: "s")
                == .pleaseLogin(message: "Please type your password to continue", email: "a@b.co"))
        response.done = IPCDone()
        #expect(Translation.reply(to: response, sessionId: "s") == nil)
    }
}
