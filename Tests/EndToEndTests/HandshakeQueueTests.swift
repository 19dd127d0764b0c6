import ChatWire
import CryptoExtras
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The edge does the handshakes it queued a share per turn of its event
/// loop: a burst of many shares, then silence, is answered whole.
@Suite(.timeLimit(.minutes(2)))
struct HandshakeQueueTests {
    @Test func aBurstOfHandshakesThenSilenceIsAnsweredWhole() async throws {
        try await withSystem(settings: ["HANDSHAKES_PER_SOURCE": "1000"]) { system in
            let key = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
            let handshake = Envelope.sessionInitRequest(clientKey: key.publicKey.derRepresentation.base64EncodedString()).encoded()
            let socket = try RawUDPSocket(from: "127.0.0.1", to: system.port)
            let burst = 100
            for _ in 0..<burst { socket.send(handshake) }
            var answered = 0
            var entry = [pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)]
            let deadline = ContinuousClock.now + .seconds(30)
            // Polled without blocking: a thread of the shared task pool is not held.
            while answered < burst && ContinuousClock.now < deadline {
                guard poll(&entry, 1, 0) > 0 else {
                    try await Task.sleep(for: .milliseconds(5))
                    continue
                }
                socket.drain { if HandshakeFloodTests.isSessionInitReply($0) { answered += 1 } }
            }
            #expect(answered == burst)
        }
    }
}
