import ChatWire
import Crypto
import CryptoExtras
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import Testing

/// udpchat-web's /ws from a WebSocket client: it relays the protocol byte
/// for byte, and closes a client that breaks its rules with a reason,
/// while it goes on serving the others.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct WebBridgeTests {
    static var logger: Logger { Logger(label: "ws-test") }

    static func hex(_ text: JSONValue?) throws -> [UInt8] {
        guard let bytes = text?.stringValue.flatMap(Hex.decode) else { throw HarnessError("not hex: \(text?.jsonText ?? "nothing")") }
        return bytes
    }

    /// One of udpchat-web's metrics now (summed over `labels`).
    static func metric(_ web: ProgramProcess, _ name: String, _ labels: [String] = []) throws -> Double {
        try OpsProbe.metric(web, ready: "udpchat-web ready", name, labels)
    }

    /// `url` (http://…/) as its WebSocket endpoint.
    static func endpoint(_ url: String) -> String { url.replacingOccurrences(of: "http://", with: "ws://") + "ws" }

    /// A full handshake and one encrypted round trip (HELLO) through the
    /// bridge: the edge's reply arrives whole, as text, and verifies.
    static func handshakeAndHello(_ url: String) async throws -> (fingerprint: String, hello: String) {
        try await withDeadline(.seconds(20), "a handshake and HELLO through \(url)") { try await exchange(url) }
    }

    private static func exchange(_ url: String) async throws -> (fingerprint: String, hello: String) {
        let result = MutexBox<(String, String)?>(nil)
        try await WebSocketClient.connect(url: endpoint(url), logger: logger) { inbound, outbound, _ in
            let clientKey = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
            let publicKey = Data(clientKey.publicKey.derRepresentation).base64EncodedString()
            let request: JSONValue = ["type": "SESSION_INIT", "client_key": .string(publicKey)]
            try await outbound.write(.text(request.jsonText))
            var messages = inbound.messages(maxSize: 1 << 16).makeAsyncIterator()
            guard case .text(let text)? = try await messages.next(), let reply = try JSONParser.parse(text).objectValue else {
                throw HarnessError("no SESSION_INIT reply")
            }
            let serverKey = try hex(reply["server_pubkey"])
            let sessionKey = Array(try clientKey.decrypt(hex(reply["encrypted_key"]), padding: .PKCS1_OAEP_SHA256))
            guard HandshakeCrypto.verify(signature: try hex(reply["signature"]), over: sessionKey, publicKeyDER: serverKey),
                let cipher = SessionCipher(keyBytes: sessionKey), let sessionId = reply["session_id"]?.stringValue
            else { throw HarnessError("the handshake reply does not verify: \(text)") }

            let nonce = Nonce.client(nanoseconds: UInt64(Date().timeIntervalSince1970 * 1e9))
            let sealed = cipher.seal(Array(#"{"type":"HELLO","data":{}}"#.utf8), nonce: nonce)
            let envelope: JSONValue = [
                "type": "SECURE_MSG", "session_id": .string(sessionId), "nonce": .string(Hex.encode(nonce)),
                "ciphertext": .string(Hex.encode(sealed)),
            ]
            try await outbound.write(.text(envelope.jsonText))
            guard case .text(let secure)? = try await messages.next(), let outer = try JSONParser.parse(secure).objectValue,
                let plain = cipher.open(try hex(outer["ciphertext"]), nonce: try hex(outer["nonce"]))
            else { throw HarnessError("no secure reply") }
            let hello = try JSONParser.parse(plain).objectValue?["message"]?.stringValue ?? ""
            result.value = (HandshakeCrypto.fingerprint(ofPublicKeyDER: serverKey), hello)
            try await outbound.close(.normalClosure, reason: nil)
        }
        guard let (fingerprint, hello) = result.value else { throw HarnessError("the exchange did not finish") }
        return (fingerprint, hello)
    }

    /// Connects, sends `frames`, and reads until the bridge closes; the
    /// close frame it sent (nil: none).
    static func closeAfterSending(_ url: String, _ frames: [WebSocketOutboundWriter.OutboundFrame]) async throws -> WebSocketCloseFrame? {
        try await withDeadline(.seconds(30), "a WebSocket the bridge should close") {
            try await WebSocketClient.connect(url: endpoint(url), configuration: .init(maxFrameSize: 1 << 17), logger: logger) {
                inbound, outbound, _ in
                for frame in frames { try await outbound.write(frame) }
                for try await _ in inbound {}
            }
        }
    }

    static let status = #"{"type":"SECURE_MSG","session_id":"00","nonce":"00","ciphertext":"00"}"#

    /// A whole exchange with the real edge: the handshake and HELLO verify.
    @Test func aHandshakeAndAnEncryptedRoundTripGoThrough() async throws {
        try await withSystem { system in
            let (_, url) = try await system.startWeb()
            let (fingerprint, hello) = try await Self.handshakeAndHello(url)
            #expect(try await system.run("udpchat-keys", ["show"]).output.contains(fingerprint))
            #expect(hello == "Welcome to UDPChat-AI.")
        }
    }

    /// With a stand-in edge that records what arrives: each frame is one
    /// datagram with exactly its bytes (a message sent in fragments too),
    /// each datagram from the edge one frame with exactly its bytes, and a
    /// datagram from anyone else is not relayed.
    @Test func framesAndDatagramsGoThroughByteForByteAndStraysDoNot() async throws {
        try await withSystem { system in
            let edge = try await StandInEdge()
            defer { Task { await edge.close() } }
            let (web, url) = try await system.startWeb(["UDP_SERVER_PORT": String(edge.port)])
            let frame = #"{ "type" :"SESSION_INIT",  "client_key":"AAAA" , "n":[1 ,2.50]}"#
            let long = #"{"type":"SECURE_MSG","ciphertext":""# + String(repeating: "ab", count: 300) + #""}"#
            let reply = #"{"type": "SECURE_MSG",   "text": "caf\u00e9 \"quoted\""}"#
            let marker = #"{"type":"SERVER_ERROR","message":"after the stray"}"#
            let heard = MutexBox<[String]>([])
            try await WebSocketClient.connect(url: Self.endpoint(url), configuration: .init(maxFrameSize: 64), logger: Self.logger) {
                inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 16).makeAsyncIterator()
                try await outbound.write(.text(frame))
                // Over 64 bytes: the client sends it in fragments.
                try await outbound.writeTextMessage(long)
                guard await waitUntil(within: .seconds(10), { edge.datagrams.count == 2 }) else {
                    throw HarnessError("the edge got \(edge.datagrams.count) datagrams")
                }
                let bridge = edge.datagrams[0].from
                try await edge.send(Array(reply.utf8), to: bridge)
                if case .text(let text)? = try await messages.next() { heard.mutate { $0.append(text) } }
                // A stranger writes to the bridge's UDP socket; then the edge does.
                let stranger = try await StandInEdge()
                try await stranger.send(Array(#"{"type":"SECURE_MSG","from":"a stranger"}"#.utf8), to: bridge)
                await stranger.close()
                guard await waitUntil(within: .seconds(10), { (try? Self.metric(web, "udpchat_web_stray_datagrams_total")) == 1 }) else {
                    throw HarnessError("the stray datagram was not counted")
                }
                try await edge.send(Array(marker.utf8), to: bridge)
                if case .text(let text)? = try await messages.next() { heard.mutate { $0.append(text) } }
                try await outbound.close(.normalClosure, reason: nil)
            }
            #expect(edge.datagrams.map { String(decoding: $0.bytes, as: UTF8.self) } == [frame, long])
            #expect(Set(edge.datagrams.map(\.from)).count == 1, "one UDP socket for the WebSocket")
            #expect(heard.value == [reply, marker])
        }
    }

    @Test func aClientBreakingARuleIsClosedWithItsReasonAndOthersGoOn() async throws {
        try await withSystem { system in
            let (web, url) = try await system.startWeb(["WEB_MESSAGES_PER_SECOND": "5", "BUFFER_SIZE": "8192"])

            let oversize = try await Self.closeAfterSending(url, [.text(#"{"pad":""# + String(repeating: "x", count: 9000) + #""}"#)])
            #expect(oversize?.closeCode == .messageTooLarge)
            #expect(oversize?.reason == "frame over 8192 bytes, the largest datagram")

            let notJSON = try await Self.closeAfterSending(url, [.text("hello there")])
            #expect(notJSON?.closeCode == .dataInconsistentWithMessage)
            #expect(notJSON?.reason == "each frame must be one JSON object")

            let binaryJunk = try await Self.closeAfterSending(url, [.binary(ByteBuffer(bytes: [0xff, 0x00, 0x7b]))])
            #expect(binaryJunk?.reason == "each frame must be one JSON object")

            // Ten at once is the burst; the eleventh is one too many.
            let flood = try await Self.closeAfterSending(url, Array(repeating: .text(Self.status), count: 11))
            #expect(flood?.closeCode == .policyViolation)
            #expect(flood?.reason == "more than 5 frames a second")

            // The bridge still serves: a whole exchange goes through.
            #expect(try await Self.handshakeAndHello(url).hello == "Welcome to UDPChat-AI.")
            #expect(web.isRunning)
            #expect(try Self.metric(web, "udpchat_web_closed_total", ["reason=\"oversize\""]) == 1)
            #expect(try Self.metric(web, "udpchat_web_closed_total", ["reason=\"not_json\""]) == 2)
            #expect(try Self.metric(web, "udpchat_web_closed_total", ["reason=\"flood\""]) == 1)
        }
    }

    @Test func beyondTheConnectionLimitAClientIsToldToComeBackLater() async throws {
        try await withSystem { system in
            let (web, url) = try await system.startWeb(["WEB_MAX_CONNECTIONS": "1"])
            let release = AsyncStream<Void>.makeStream()
            let first = Task {
                try await WebSocketClient.connect(url: Self.endpoint(url), logger: Self.logger) { _, outbound, _ in
                    for await _ in release.stream {}
                    try await outbound.close(.normalClosure, reason: nil)
                }
            }
            // The first holds the only place until it closes.
            #expect(await waitUntil { (try? Self.metric(web, "udpchat_web_connections")) == 1 })
            let refused = try await Self.silentClient(url, answer: true)
            #expect(refused["status"] == 101)
            #expect(refused["close"] == [1013, "the bridge has its 1 connections; try again later"])
            release.continuation.finish()
            _ = try await withDeadline(.seconds(20), "the first WebSocket's close") { try await first.value }
            // Its place is free again.
            #expect(await waitUntil { (try? await Self.handshakeAndHello(url)) != nil })
        }
    }

    /// A page of another site is closed at once with the reason; the
    /// bridge's own page and listed origins go on. (A browser sends its
    /// page's origin; curl stands in for one.)
    @Test func aPageFromAnotherSiteIsRefused() async throws {
        try await withSystem { system in
            let (web, url) = try await system.startWeb(["WEB_ALLOWED_ORIGINS": "https://chat.example.com"])
            let port = try #require(URL(string: url)?.port)
            let upgrade = { (origin: String) async throws -> String in
                let (status, output) = try await runDetached(
                    URL(fileURLWithPath: "/usr/bin/env"),
                    [
                        "curl", "-s", "-i", "--max-time", "2", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H",
                        "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "-H", "Origin: \(origin)",
                        "http://127.0.0.1:\(port)/ws",
                    ])
                // 28: curl's time ran out with the WebSocket still open.
                guard status == 0 || status == 28 else { throw HarnessError("curl failed (\(status)): \(output)") }
                return output
            }
            let refused = try await upgrade("https://evil.example")
            #expect(refused.contains("pages from https://evil.example may not connect here"))
            for allowed in ["https://chat.example.com", "http://127.0.0.1:\(port)"] {
                let output = try await upgrade(allowed)
                #expect(output.hasPrefix("HTTP/1.1 101") && !output.contains("may not connect"), "\(allowed)")
            }
            #expect(try Self.metric(web, "udpchat_web_connections_total", ["result=\"origin_refused\""]) == 1)
        }
    }

    /// With a certificate the page and /ws are https:// and wss://; a
    /// certificate it cannot read stops it at start with one clear line.
    @Test func withACertificateItServesHTTPSAndRefusesOneItCannotRead() async throws {
        try await withSystem { system in
            let certificate = system.root.appendingPathComponent("web.crt").path
            let key = system.root.appendingPathComponent("web.key").path
            let made = try await runDetached(
                URL(fileURLWithPath: "/usr/bin/env"),
                [
                    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", key,
                    "-out", certificate,
                ])
            #expect(made.status == 0, "\(made.output)")
            let (_, url) = try await system.startWeb(["WEB_TLS_CERT": certificate, "WEB_TLS_KEY": key])
            #expect(url.hasPrefix("https://127.0.0.1:"))
            let page = try await runDetached(
                URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-s", "--max-time", "5", "--cacert", certificate, url])
            #expect(page.output.contains("<title>udpchat</title>"), "\(page.output)")
            let upgrade = try await runDetached(
                URL(fileURLWithPath: "/usr/bin/env"),
                [
                    "curl", "-s", "-i", "--http1.1", "--max-time", "2", "--cacert", certificate, "-H", "Connection: Upgrade", "-H",
                    "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    url + "ws",
                ])
            #expect(upgrade.output.hasPrefix("HTTP/1.1 101"), "\(upgrade.output)")

            let missing = try ProgramProcess(
                name: "web-bad-tls", executable: system.binaries.appendingPathComponent("udpchat-web"),
                environment: system.environment.merging(
                    ["WS_PORT": "0", "WEB_METRICS_PORT": "0", "WEB_TLS_CERT": certificate + ".missing", "WEB_TLS_KEY": key]) { $1 },
                directory: system.root)
            #expect(await waitUntil { !missing.isRunning })
            #expect(missing.terminationStatus == 1)
            #expect(missing.log().contains("udpchat-web: WEB_TLS_CERT/WEB_TLS_KEY: cannot read"), "\(missing.log())")
        }
    }

    /// What Tests/Interop/silent_websocket.py saw: an upgrade with no frame
    /// sent, the close frame, and when the connection ended.
    static func silentClient(_ url: String, answer: Bool) async throws -> JSONObject {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Interop/silent_websocket.py")
        let address = try #require(URL(string: url))
        let (status, output) = try await runDetached(
            URL(fileURLWithPath: "/usr/bin/env"),
            ["python3", script.path, address.host ?? "127.0.0.1", String(address.port ?? 0)] + (answer ? ["--answer"] : []))
        guard status == 0, let report = try? JSONParser.parse(output.trimmingCharacters(in: .whitespacesAndNewlines)).objectValue else {
            throw HarnessError("silent_websocket.py failed: \(output)")
        }
        return report
    }

    /// Sockets udpchat-web holds now (TCP and UDP), from /proc.
    static func sockets(_ web: ProgramProcess) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(web.pid)/fd")) ?? []
        return fds.filter {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(web.pid)/fd/\($0)"))?.hasPrefix("socket:") == true
        }.count
    }

    /// A client that upgrades and then neither sends nor answers anything:
    /// the idle close goes unanswered, and the bridge drops the connection
    /// anyway, its UDP socket with it.
    @Test func aClientThatNeverAnswersTheCloseIsDroppedWithItsUDPSocket() async throws {
        try await withSystem { system in
            let (web, url) = try await system.startWeb(["INACTIVITY_TIMEOUT_MS": "1000"])
            let port = try #require(URL(string: url)?.port)
            let before = Self.sockets(web)
            let silent = Task { try await Self.silentClient(url, answer: false) }
            // Upgraded: a TCP connection and a UDP socket more.
            #expect(await waitUntil { Self.sockets(web) == before + 2 })
            // Closed for idleness at 1 s, and dropped though it never answers.
            let seen = try await withDeadline(.seconds(40), "the silent client's end") { try await silent.value }
            #expect(seen["close"] == [1000, "nothing relayed for 1 s"])
            let seconds = { (value: JSONValue?) -> Double in
                switch value {
                case .double(let number)?: return number
                case .int(let number)?: return Double(number)
                default: return -1
                }
            }
            let waited = seconds(seen["eof_at"]) - seconds(seen["close_at"])
            // At once, or at the latest when its 10 s to answer are up.
            #expect(waited >= 0 && waited < 12, "dropped \(waited) s after the close frame: \(JSONValue.object(seen).jsonText)")
            #expect(await waitUntil { Self.sockets(web) == before })
            #expect(try Self.metric(web, "udpchat_web_closed_total", ["reason=\"idle\""]) == 1)
            #expect(try Self.metric(web, "udpchat_web_connections") == 0)
        }
    }

    @Test func anIdleWebSocketIsClosedWithItsUDPSocket() async throws {
        try await withSystem { system in
            let (web, url) = try await system.startWeb(["INACTIVITY_TIMEOUT_MS": "1000"])
            let before = Self.sockets(web)
            let started = ContinuousClock.now
            let closed = try await Self.closeAfterSending(url, [])
            #expect(closed?.closeCode == .normalClosure)
            #expect(closed?.reason == "nothing relayed for 1 s")
            #expect(ContinuousClock.now - started >= .milliseconds(900))
            #expect(await waitUntil { (try? Self.metric(web, "udpchat_web_connections")) == 0 })
            #expect(await waitUntil { Self.sockets(web) == before }, "the UDP socket closes with the WebSocket")
            #expect(try Self.metric(web, "udpchat_web_closed_total", ["reason=\"idle\""]) == 1)
        }
    }
}
