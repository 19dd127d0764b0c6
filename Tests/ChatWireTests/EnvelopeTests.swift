import ChatWire
import Testing

@Suite struct EnvelopeTests {
    static let reply = SessionInitReply(
        sessionId: "0123456789abcdef0123456789abcdef", encryptedKey: "aa", serverPublicKey: "bb", signature: "cc",
        fingerprint: "dd")
    static let secure = SecureEnvelope(sessionId: "0123456789abcdef0123456789abcdef", nonce: "00", ciphertext: "11")

    @Test func requestsRoundTrip() throws {
        for envelope in [Envelope.sessionInitRequest(clientKey: "MIIB"), .secure(Self.secure)] {
            #expect(try Envelope.decodeRequest(envelope.encoded()) == envelope)
        }
    }

    @Test func responsesRoundTrip() throws {
        for envelope in [Envelope.sessionInitReply(Self.reply), .secure(Self.secure), .serverError(message: "oops")] {
            #expect(try Envelope.decodeResponse(envelope.encoded()) == envelope)
        }
    }

    @Test func theSecureDatagramWrittenDirectlyIsTheEncodedEnvelope() throws {
        let nonce: [UInt8] = [0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xff]
        let ciphertext: [UInt8] = Array(0...40)
        let direct = SecureEnvelope.datagram(sessionId: Self.secure.sessionId, nonce: nonce, ciphertext: ciphertext)
        let envelope = Envelope.secure(
            SecureEnvelope(sessionId: Self.secure.sessionId, nonce: Hex.encode(nonce), ciphertext: Hex.encode(ciphertext)))
        #expect(direct == envelope.encoded())
        #expect(try Envelope.decodeRequest(direct) == envelope)
    }

    @Test func serverErrorHasTheOriginalShape() throws {
        let object = try #require(try JSONParser.parse(Envelope.serverError(message: "x").encoded()).objectValue)
        #expect(object == ["type": "SERVER_ERROR", "message": "x"])
    }

    /// docs/protocol.md §4.1: the SERVER_ERROR text for each malformed datagram.
    @Test(arguments: [
        (#"{"type":"SECURE_MSG","session_id":"a","nonce":"b"}"#, "Message format is incomplete"),
        (#"{"type":"SECURE_MSG","session_id":"","nonce":"b","ciphertext":"c"}"#, "Message format is incomplete"),
        (#"{"type":"SECURE_MSG","session_id":1,"nonce":"b","ciphertext":"c"}"#, "Message format is incomplete"),
        (#"{"type":"SESSION_INIT"}"#, "Missing client's public key"),
        (#"{"type":"SESSION_INIT","client_key":""}"#, "Missing client's public key"),
        (#"{"type":"PING"}"#, "Unknown message type 'PING'"),
        (#"{"no":"type"}"#, "Unknown message type 'None'"),
        (#"{"type":null}"#, "Unknown message type 'None'"),
        (#"[1,2]"#, "Invalid message format"),
        (#""text""#, "Invalid message format"),
    ])
    func malformedRequestsGetTheProtocolText(datagram: String, text: String) {
        #expect(throws: Envelope.RequestError(replyText: text)) { try Envelope.decodeRequest(Array(datagram.utf8)) }
    }

    @Test func unparsableDatagramsGetThePacketFailurePrefix() {
        do {
            _ = try Envelope.decodeRequest(Array(#"{"type": "SESSION_INIT", "client_key": "#.utf8))
            Issue.record("a truncated datagram decoded")
        } catch {
            #expect(error.replyText.hasPrefix("Packet processing failure: "))
        }
    }

    @Test func echoedTypeIsCutShort() {
        let long = String(repeating: "A", count: 5000)
        do {
            _ = try Envelope.decodeRequest(Array(#"{"type":"\#(long)"}"#.utf8))
        } catch {
            #expect(error.replyText.count < 100)
        }
    }
}
