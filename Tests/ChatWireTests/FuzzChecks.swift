// Shared by the CI regression test over the fuzz corpus and by the libFuzzer
// target (scripts/fuzz.sh compiles this file with the codec sources into
// one module, where there is no ChatWire module to import).
#if canImport(ChatWire)
    import ChatWire
#endif

/// What must hold for any datagram, however malformed: the decoders throw
/// typed errors instead of crashing, and whatever decodes re-encodes to
/// something that decodes to the same value.
enum FuzzChecks {
    /// Runs every decoder on `bytes`; returns a description of the first
    /// broken invariant, or nil.
    static func check(_ bytes: [UInt8]) -> String? {
        if let envelope = try? Envelope.decodeRequest(bytes) {
            guard let again = try? Envelope.decodeRequest(envelope.encoded()), again == envelope else {
                return "request envelope does not round-trip: \(envelope)"
            }
        }
        if let envelope = try? Envelope.decodeResponse(bytes) {
            guard let again = try? Envelope.decodeResponse(envelope.encoded()), again == envelope else {
                return "response envelope does not round-trip: \(envelope)"
            }
        }
        if let packet = try? ClientPacket.decode(bytes) {
            guard let again = try? ClientPacket.decode(packet.json.serialized()), again == packet else {
                return "client packet does not round-trip: \(packet)"
            }
        }
        if let received = try? ServerPacket.decode(bytes) {
            guard let again = try? ServerPacket.decode(received.packet.json(msgId: received.msgId).serialized()), again == received else {
                return "server packet does not round-trip: \(received)"
            }
        }
        if let value = try? JSONParser.parse(bytes) {
            guard let again = try? JSONParser.parse(value.serialized()), again == value else {
                return "JSON does not round-trip: \(value)"
            }
        }
        // The hot paths answer only what the full decoders would answer the same way.
        if let fields = bytes.withUnsafeBytes({ HotPaths.secureEnvelope($0) }) {
            let text = { (range: Range<Int>) in String(decoding: bytes[range], as: UTF8.self) }
            let expected = Envelope.secure(
                SecureEnvelope(sessionId: text(fields.sessionId), nonce: text(fields.nonce), ciphertext: text(fields.ciphertext)))
            guard (try? Envelope.decodeRequest(bytes)) == expected else { return "the SECURE_MSG fast path disagrees: \(expected)" }
        }
        if let range = bytes.withUnsafeBytes({ HotPaths.acknowledgement($0) }) {
            let expected = ClientPacket.ack(msgId: String(decoding: bytes[range], as: UTF8.self))
            guard (try? ClientPacket.decode(bytes)) == expected else { return "the ACK fast path disagrees: \(expected)" }
        }
        _ = Hex.decode(String(decoding: bytes, as: UTF8.self))
        return nil
    }
}
