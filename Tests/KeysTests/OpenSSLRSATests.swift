import ChatWire
import Foundation
import IPCMessages
import Crypto
import CryptoExtras
import Logging
import OpenSSLRSA
import Ops
import Testing

@testable import udpchat_keys

/// The system OpenSSL's RSA, checked against swift-crypto's: each library
/// accepts what the other makes, for the handshake's exact parameters.
@Suite struct OpenSSLRSATests {
    static let identity = try! _RSA.Signing.PrivateKey(keySize: .bits2048)

    @Test(arguments: [2048, 3072])
    func aPSSSignatureFromOpenSSLVerifiesWithSwiftCrypto(bits: Int) throws {
        let identity = bits == 2048 ? Self.identity : try _RSA.Signing.PrivateKey(keySize: .bits3072)
        let key = try OpenSSLRSAKey(privateKeyDER: [UInt8](identity.derRepresentation))
        let message = SessionCipher.random().keyBytes
        let signature = try key.signPSS(message)
        #expect(signature.count == bits / 8)
        let publicKey = [UInt8](identity.publicKey.derRepresentation)
        #expect(HandshakeCrypto.verify(signature: signature, over: message, publicKeyDER: publicKey))
        // Over that message only.
        var other = message
        other[0] ^= 1
        #expect(!HandshakeCrypto.verify(signature: signature, over: other, publicKeyDER: publicKey))
    }

    @Test func anOAEPCiphertextFromOpenSSLDecryptsWithSwiftCrypto() throws {
        let client = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
        let key = try OpenSSLRSAKey(publicKeyDER: [UInt8](client.publicKey.derRepresentation))
        let sessionKey = SessionCipher.random().keyBytes
        let ciphertext = try key.encryptOAEP(sessionKey)
        #expect(ciphertext.count == 256)
        #expect([UInt8](try client.decrypt(ciphertext, padding: .PKCS1_OAEP_SHA256)) == sessionKey)
    }

    /// The client's side, as the bench does it: a session key swift-crypto
    /// wrapped opens with OpenSSL, and one altered does not.
    @Test func aSessionKeySwiftCryptoWrappedOpensWithOpenSSL() throws {
        let client = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
        let clientKey = try OpenSSLRSAKey(privateKeyDER: [UInt8](client.derRepresentation))
        let sessionKey = SessionCipher.random().keyBytes
        var ciphertext = [UInt8](try client.publicKey.encrypt(sessionKey, padding: .PKCS1_OAEP_SHA256))
        #expect(clientKey.decryptOAEP(ciphertext) == sessionKey)
        ciphertext[100] ^= 1
        #expect(clientKey.decryptOAEP(ciphertext) == nil)
    }

    @Test func aKeyThatIsNotDERIsRefusedWithOpenSSLsReason() {
        #expect {
            _ = try OpenSSLRSAKey(privateKeyDER: [0x30, 0x03, 0x02, 0x01, 0x00])
        } throws: { error in
            guard let error = error as? ChatError else { return false }
            return error.code == .openSSL && error.message.hasPrefix("d2i_AutoPrivateKey failed")
        }
    }
}

extension OpenSSLRSATests {
    /// Whichever library RSA_LIBRARY names, a new session's signature is
    /// one the clients accept.
    @Test(arguments: ["openssl", "swift-crypto"])
    func aNewSessionIsSignedSoTheClientAcceptsIt(library: String) throws {
        let wrap = try #require(SessionKeyWrap(kekBytes: [UInt8](repeating: 7, count: 32)))
        let signer = try handshakeSigner(library, identity: Self.identity)
        #expect((signer is OpenSSLRSAKey) == (library == "openssl"))
        let service = KeyService(identity: Self.identity, signer: signer, wrap: wrap, logger: Logger(label: "test"))
        let client = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
        let response = service.newSession(clientKeyDER: [UInt8](client.publicKey.derRepresentation))
        guard case .newSession(let made)? = response.result else {
            Issue.record("\(response)")
            return
        }
        #expect(
            HandshakeCrypto.verify(
                signature: [UInt8](made.signature), over: [UInt8](made.sessionKey),
                publicKeyDER: [UInt8](Self.identity.publicKey.derRepresentation)))
        #expect([UInt8](try client.decrypt(made.encryptedKey, padding: .PKCS1_OAEP_SHA256)) == [UInt8](made.sessionKey))
    }

    @Test func anUnknownLibraryIsAConfigurationError() {
        #expect { _ = try handshakeSigner("libressl", identity: Self.identity) } throws: { ($0 as? ChatError)?.code == .configuration }
    }
}

extension OpenSSLRSATests {
    /// The signing threads take a bounded queue: a handshake beyond it is
    /// answered "busy" at once, and one within it is signed.
    @Test func aHandshakeBeyondTheSigningQueueIsAnsweredBusy() async throws {
        let wrap = try #require(SessionKeyWrap(kekBytes: [UInt8](repeating: 7, count: 32)))
        let service = KeyService(identity: Self.identity, wrap: wrap, logger: Logger(label: "test"))
        let client = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
        let request = IPCKeysRequest.newSession(clientKey: [UInt8](client.publicKey.derRepresentation))
        // One thread, one place in the queue: hold the thread, take the place.
        let pool = ThreadPool(name: "test-signing", threads: 1, maximumWaiting: 1)
        defer { pool.stop() }
        // Submitted from here and waited for without blocking a thread of the
        // shared task pool (on 2 cores, blocking one can starve the rest).
        let started = MutexBox(false)
        let hold = DispatchSemaphore(value: 0)
        pool.submit([()], { _ in
            started.value = true
            hold.wait()
        }) { _ in }
        let deadline = ContinuousClock.now + .seconds(10)
        while !started.value && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        #expect(started.value, "the pool's thread took the first job")
        let queued = Task { await service.handle(request, signingOn: pool) }
        while pool.waiting < 1 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        #expect(pool.waiting == 1)
        let refused = await service.handle(request, signingOn: pool)
        #expect(refused.failure.error.code == .busy)
        // Other requests do not wait for the signing threads.
        #expect(!(await service.handle(.identity, signingOn: pool)).identity.publicKeyDer.isEmpty)
        hold.signal()
        guard case .newSession? = (await queued.value).result else {
            Issue.record("the queued handshake was not signed")
            return
        }
    }
}
