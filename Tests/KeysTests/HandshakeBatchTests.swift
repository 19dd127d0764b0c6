import ChatWire
import CryptoExtras
import Foundation
import IPCMessages
import Logging
import Ops
import Testing

@testable import udpchat_keys

/// Several handshakes in one request: each answered in order, on every
/// signing thread, and all refused together when the queue has no room.
@Suite struct HandshakeBatchTests {
    nonisolated(unsafe) static let client = try! _RSA.Encryption.PrivateKey(keySize: .bits2048)
    static let service = KeyService(
        identity: OpenSSLRSATests.identity, wrap: SessionKeyWrap(kekBytes: [UInt8](repeating: 7, count: 32))!, logger: Logger(label: "test"))

    @Test func eachHandshakeOfABatchIsAnsweredInOrder() async throws {
        let good = [UInt8](Self.client.publicKey.derRepresentation)
        let keys = [good, [0x30, 0x00], good, good, good]
        let pool = ThreadPool(name: "test-signing", threads: 2, maximumWaiting: 16)
        defer { pool.stop() }
        let response = await Self.service.handle(.newSessions(clientKeys: keys), signingOn: pool)
        let results = response.newSessions.results
        try #require(results.count == keys.count)
        #expect(results[1].failure.error.code == .invalidClientKey)
        let made = [results[0], results[2], results[3], results[4]].compactMap { result -> IPCNewSessionKeys? in
            guard case .newSession(let keys)? = result.result else { return nil }
            return keys
        }
        #expect(made.count == 4)
        #expect(Set(made.map(\.sessionID)).count == 4)
        for keys in made {
            let opened = try Self.client.decrypt(keys.encryptedKey, padding: .PKCS1_OAEP_SHA256)
            #expect([UInt8](opened) == [UInt8](keys.sessionKey))
            #expect(
                HandshakeCrypto.verify(
                    signature: [UInt8](keys.signature), over: [UInt8](keys.sessionKey), publicKeyDER: [UInt8](keys.publicKeyDer)))
        }
        #expect(pool.completed.value == keys.count)
    }

    @Test func aBatchTheQueueHasNoRoomForIsAnsweredBusyWholeAndRunsNothing() async throws {
        let key = [UInt8](Self.client.publicKey.derRepresentation)
        let pool = ThreadPool(name: "test-signing", threads: 2, maximumWaiting: 3)
        defer { pool.stop() }
        let response = await Self.service.handle(.newSessions(clientKeys: Array(repeating: key, count: 4)), signingOn: pool)
        #expect(response.newSessions.results.count == 4)
        #expect(response.newSessions.results.allSatisfy { $0.failure.error.code == .busy })
        #expect(pool.completed.value == 0)
        let fits = await Self.service.handle(.newSessions(clientKeys: Array(repeating: key, count: 3)), signingOn: pool)
        #expect(fits.newSessions.results.allSatisfy { if case .newSession? = $0.result { true } else { false } })
    }

    @Test func aBatchLargerThanAnEdgeSendsIsRefused() async throws {
        let pool = ThreadPool(name: "test-signing", threads: 1, maximumWaiting: 2000)
        defer { pool.stop() }
        let keys = Array(repeating: [UInt8](Self.client.publicKey.derRepresentation), count: IPCKeysRequest.maximumNewSessions + 1)
        let response = await Self.service.handle(.newSessions(clientKeys: keys), signingOn: pool)
        #expect(response.failure.error.code == .invalidRequest)
        #expect(pool.completed.value == 0)
    }
}
