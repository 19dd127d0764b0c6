import ChatWire
import IPCMessages
import Testing

@testable import udpchat_edge

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
