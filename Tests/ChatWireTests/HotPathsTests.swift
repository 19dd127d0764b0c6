import ChatWire
import Testing

/// The fast readers of the SECURE_MSG envelope and the ACK answer exactly
/// what the full decoders answer, or leave the input to them.
@Suite struct HotPathsTests {
    static let id = String(repeating: "a", count: 32)
    static let nonce = String(repeating: "b", count: 24)

    // number, datagram, whether the fast path reads it
    static let envelopes: [(Int, String, Bool)] = [
        (1, #"{"type":"SECURE_MSG","session_id":"\#(id)","nonce":"\#(nonce)","ciphertext":"cc"}"#, true),
        (2, #"{"type": "SECURE_MSG", "session_id": "\#(id)", "nonce": "\#(nonce)", "ciphertext": "cc"}"#, true),  // Python's spacing
        (3, #"{"ciphertext":"cc","nonce":"\#(nonce)","session_id":"\#(id)","type":"SECURE_MSG"}"#, true),  // any order
        (4, " \n{\t\"type\":\"SECURE_MSG\",\"session_id\":\"x\",\"nonce\":\"y\",\"ciphertext\":\"z\"}\r\n", true),
        (5, #"{"type":"SECURE_MSG","session_id":"\#(id)","nonce":"\#(nonce)","ciphertext":"cc","extra":1}"#, false),
        (6, #"{"type":"SECURE_MSG","session_id":"a\u0062","nonce":"\#(nonce)","ciphertext":"cc"}"#, false),  // an escape
        (7, #"{"type":"SECURE_MSG","session_id":"é","nonce":"\#(nonce)","ciphertext":"cc"}"#, false),  // not ASCII
        (8, #"{"type":"SECURE_MSG","session_id":"","nonce":"\#(nonce)","ciphertext":"cc"}"#, false),  // empty
        (9, #"{"type":"SECURE_MSG","session_id":"a","session_id":"b","nonce":"n","ciphertext":"c"}"#, false),  // twice
        (10, #"{"type":"SESSION_INIT","session_id":"a","nonce":"n","ciphertext":"c"}"#, false),
        (11, #"{"type":"SECURE_MSG","session_id":"a","nonce":"n","ciphertext":"c"}x"#, false),  // trailing bytes
        (12, #"{"type":"SECURE_MSG","session_id":"a","nonce":"n"}"#, false),  // missing
        (13, #"{"type":"SECURE_MSG","session_id":1,"nonce":"n","ciphertext":"c"}"#, false),
        (14, #"{"type":"SECURE_MSG","session_id":"a","nonce":"n","ciphertext":"c""#, false),  // cut short
        (15, "", false),
    ]

    @Test func envelopesAreReadFastOnlyWhenTheFullParserAgrees() {
        for (number, text, fast) in Self.envelopes {
            let bytes = Array(text.utf8)
            let fields = bytes.withUnsafeBytes { HotPaths.secureEnvelope($0) }
            #expect((fields != nil) == fast, "vector \(number)")
            if let fields {
                let slice = { (range: Range<Int>) in String(decoding: bytes[range], as: UTF8.self) }
                let expected = Envelope.secure(
                    SecureEnvelope(sessionId: slice(fields.sessionId), nonce: slice(fields.nonce), ciphertext: slice(fields.ciphertext)))
                #expect((try? Envelope.decodeRequest(bytes)) == expected, "vector \(number)")
            }
            #expect(FuzzChecks.check(bytes) == nil, "vector \(number)")
        }
    }

    // number, inner packet, the msg_id the fast path reads (nil: left to the full decoder)
    static let packets: [(Int, String, String?)] = [
        (1, #"{"type":"ACK","data":{"msg_id":"0123"}}"#, "0123"),
        (2, #"{"type": "ACK", "data": {"msg_id": "0123"}}"#, "0123"),
        (3, #"{"data":{"msg_id":"x"},"type":"ACK"}"#, "x"),
        (4, #"{"type":"ACK","data":{"msg_id":""}}"#, ""),
        (5, #"{"type":"ACK","data":{}}"#, nil),  // no msg_id: ACK(nil), for the full decoder
        (6, #"{"type":"ACK","data":{"msg_id":"x"},"msg_id":"y"}"#, nil),  // reflected
        (7, #"{"type":"ACK","data":{"msg_id":"x","other":1}}"#, nil),
        (8, #"{"type":"HELLO","data":{"msg_id":"x"}}"#, nil),
        (9, #"{"type":"ACK","data":{"msg_id":1}}"#, nil),
        (10, #"{"type":"ACK","data":[]}"#, nil),
        (11, #"{"type":"ACK","type":"ACK","data":{"msg_id":"x"}}"#, nil),
        (12, #"{"type":"ACK","data":{"msg_id":"x"}"#, nil),
    ]

    @Test func acknowledgementsAreReadFastOnlyWhenTheFullDecoderAgrees() {
        for (number, text, msgId) in Self.packets {
            let bytes = Array(text.utf8)
            let range = bytes.withUnsafeBytes { HotPaths.acknowledgement($0) }
            #expect(range.map { String(decoding: bytes[$0], as: UTF8.self) } == msgId, "vector \(number)")
            if msgId != nil { #expect((try? ClientPacket.decode(bytes)) == .ack(msgId: msgId), "vector \(number)") }
            #expect(FuzzChecks.check(bytes) == nil, "vector \(number)")
        }
    }
}
