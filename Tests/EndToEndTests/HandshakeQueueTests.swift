import ChatWire
import CryptoExtras
import Foundation
import Testing

/// The edge does the handshakes it queued a share per turn of its event
/// loop: a burst of many shares, then silence, is completed whole.
@Suite(.timeLimit(.minutes(2)))
struct HandshakeQueueTests {
    @Test func aBurstOfHandshakesThenSilenceIsCompletedWhole() async throws {
        try await withSystem(settings: ["HANDSHAKES_PER_SOURCE": "1000"]) { system in
            let key = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
            let handshake = Envelope.sessionInitRequest(clientKey: key.publicKey.derRepresentation.base64EncodedString()).encoded()
            let socket = try RawUDPSocket(from: "127.0.0.1", to: system.port)
            let before = try system.edgeMetric("udpchat_edge_handshakes_total", ["result=\"ok\""])
            let burst = 100
            for _ in 0..<burst { socket.send(handshake) }
            // Counted where the edge completes them: the replies themselves
            // may overflow this socket's buffer while the test waits.
            var completed = 0.0
            let deadline = ContinuousClock.now + .seconds(30)
            while completed < Double(burst) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                socket.drain { _ in }
                completed = try system.edgeMetric("udpchat_edge_handshakes_total", ["result=\"ok\""]) - before
            }
            #expect(completed == Double(burst))
        }
    }
}
