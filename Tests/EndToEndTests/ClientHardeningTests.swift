import ChatClient
import ChatWire
import Foundation
import NIOCore
import NIOPosix
import Testing

/// The client trusts only what the server sent.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ClientHardeningTests {
    @Test func aPlaintextErrorFromAnotherAddressAnswersNothing() async throws {
        try await withSystem { system in
            let client = try await system.client()
            let port = try #require(client.localPort)
            let rogue = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
            let forged = Envelope.serverError(message: "forged by someone else").encoded()
            let target = try SocketAddress(ipAddress: "127.0.0.1", port: port)
            // While the client waits for a SERVER_ERROR (an ACK gets no answer
            // from the server), another socket sends it one, again and again.
            let flooding = Task {
                let deadline = ContinuousClock.now + .seconds(2)
                while ContinuousClock.now < deadline && !Task.isCancelled {
                    try? await rogue.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: forged)))
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            await #expect {
                let arrival = try await client.exchange(try client.sealed(.ack(msgId: "0")), expecting: ["SERVER_ERROR"], timeout: .seconds(1))
                Issue.record("the client took \(arrival) from another address")
            } throws: { ($0 as? ChatError)?.code == .noAnswer }
            flooding.cancel()
            _ = await flooding.value
            try await rogue.close()
            // The client still talks to its server.
            #expect(try await client.hello() == "Welcome to UDPChat-AI.")
            await client.close()
        }
    }

    /// A packet sealed with the session's key under a nonce without the
    /// server's bit (the client's own, reflected back at it) is dropped; the
    /// same packet under a server nonce, from the same address, is taken.
    @Test func aPacketUnderAClientNonceIsNotTakenAsTheServers() async throws {
        try await withSystem { system in
            let proxy = try await LossyProxy(
                upstream: try SocketAddress(ipAddress: "127.0.0.1", port: system.port), impairments: Impairments(), seed: 1)
            let client = try await ChatClient(
                options: .init(host: "127.0.0.1", port: proxy.port, knownHosts: nil, timeout: .seconds(5)))
            let session = try await client.connect()
            _ = try await client.login(email: "alice@example.com")
            let cipher = try #require(SessionCipher(keyBytes: session.sessionKey))
            func forged(_ text: String, nonce: [UInt8]) -> [UInt8] {
                let json = ServerPacket.error(message: text).json().serialized()
                return Envelope.secure(
                    SecureEnvelope(sessionId: session.sessionId, nonce: Hex.encode(nonce), ciphertext: Hex.encode(cipher.seal(json, nonce: nonce)))
                ).encoded()
            }
            let port = try #require(client.localPort)
            let clientNonce = Nonce.client(nanoseconds: UInt64(Date().timeIntervalSince1970 * 1e9))
            try await proxy.inject(forged("reflected", nonce: clientNonce), toClientPort: port)
            try await proxy.inject(forged("from the server", nonce: Nonce.server()), toClientPort: port)
            // Both went out in order; the second arriving proves the first was read and dropped.
            let first = await client.nextEvent(timeout: .seconds(5)) { if case .error = $0.packet { true } else { false } }
            #expect(first?.packet == .error(message: "from the server"))
            await client.close()
            await proxy.close()
        }
    }

    /// Transmissions of one notice carry ids that differ in their ninth
    /// byte only (the transmission's number): the client shows it once.
    @Test func aNoticeSentAgainIsShownOnce() async throws {
        try await withSystem { system in
            let proxy = try await LossyProxy(
                upstream: try SocketAddress(ipAddress: "127.0.0.1", port: system.port), impairments: Impairments(), seed: 1)
            let client = try await ChatClient(options: .init(host: "127.0.0.1", port: proxy.port, knownHosts: nil, acknowledge: false))
            let session = try await client.connect()
            _ = try await client.login(email: "alice@example.com")
            let cipher = try #require(SessionCipher(keyBytes: session.sessionKey))
            func copy(_ text: String, msgId: String) -> [UInt8] {
                let nonce = Nonce.server()
                let json = ServerPacket.error(message: text).json(msgId: msgId).serialized()
                return Envelope.secure(
                    SecureEnvelope(sessionId: session.sessionId, nonce: Hex.encode(nonce), ciphertext: Hex.encode(cipher.seal(json, nonce: nonce)))
                ).encoded()
            }
            let port = try #require(client.localPort)
            let first = "0123456789abcdef" + "01" + "23456789abcdef"
            let second = "0123456789abcdef" + "02" + "23456789abcdef"
            let other = "1123456789abcdef" + "01" + "23456789abcdef"
            try await proxy.inject(copy("notice", msgId: first), toClientPort: port)
            try await proxy.inject(copy("notice", msgId: second), toClientPort: port)
            try await proxy.inject(copy("another notice", msgId: other), toClientPort: port)
            let shown = await client.nextEvent(timeout: .seconds(5)) { if case .error = $0.packet { true } else { false } }
            let next = await client.nextEvent(timeout: .seconds(5)) { if case .error = $0.packet { true } else { false } }
            #expect(shown?.packet == .error(message: "notice"))
            #expect(next?.packet == .error(message: "another notice"), "the second transmission was not shown again")
            await client.close()
            await proxy.close()
        }
    }

    @Test func aKnownHostsFileThatCannotBeReadIsNotWrittenOver() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("udpchat-known-\(SecureRandom.identifier())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("known_hosts").path
        // A pin, then bytes that are not UTF-8.
        let original = Data("127.0.0.1:9999 SHA256:abc\n".utf8) + Data([0xff, 0xfe, 0x0a])
        try original.write(to: URL(fileURLWithPath: path))
        #expect(throws: (any Error).self) { try KnownHosts(path: path).pin("SHA256:def", for: "127.0.0.1:8888") }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == original, "the pins in the file are kept")
        // A missing file is created with the pin.
        let fresh = directory.appendingPathComponent("fresh").path
        try KnownHosts(path: fresh).pin("SHA256:def", for: "127.0.0.1:8888")
        #expect(KnownHosts(path: fresh).fingerprint(for: "127.0.0.1:8888") == "SHA256:def")
    }
}
