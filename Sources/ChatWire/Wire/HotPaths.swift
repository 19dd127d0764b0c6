/// The two JSON shapes the edge reads most, read without building JSON
/// values: the `SECURE_MSG` envelope of every datagram (docs/protocol.md §3.1)
/// and the `ACK` inside most of them (§5.1). Each reader accepts only the
/// plain form (string values without escapes, each key once, whitespace
/// anywhere JSON allows it) and returns nil for anything else, which then
/// goes through the full parser: the answer is the same either way, only
/// faster here (the tests check both on the same inputs).
public enum HotPaths {
    /// The byte ranges of a `SECURE_MSG` envelope's three fields.
    public struct SecureFields: Equatable, Sendable {
        public var sessionId: Range<Int>
        public var nonce: Range<Int>
        public var ciphertext: Range<Int>
    }

    /// A `{"type": "SECURE_MSG", "session_id", "nonce", "ciphertext"}`
    /// object of non-empty strings and nothing else; nil for any other input.
    public static func secureEnvelope(_ bytes: UnsafeRawBufferPointer) -> SecureFields? {
        var reader = Reader(bytes)
        var type: Range<Int>?
        var session: Range<Int>?
        var nonce: Range<Int>?
        var ciphertext: Range<Int>?
        let complete = reader.object { reader, key in
            guard let value = reader.string(), !value.isEmpty else { return false }
            switch key {
            // Any other type is known at once (a flood of handshakes is read so).
            case "type": guard type == nil, reader.equals(value, "SECURE_MSG") else { return false }; type = value
            case "session_id": guard session == nil else { return false }; session = value
            case "nonce": guard nonce == nil else { return false }; nonce = value
            case "ciphertext": guard ciphertext == nil else { return false }; ciphertext = value
            default: return false
            }
            return true
        }
        guard complete, reader.atEnd, let type, reader.equals(type, "SECURE_MSG"), let session, let nonce, let ciphertext else {
            return nil
        }
        return SecureFields(sessionId: session, nonce: nonce, ciphertext: ciphertext)
    }

    /// The `msg_id` of a `{"type": "ACK", "data": {"msg_id": "..."}}` packet
    /// and nothing else; nil for any other input.
    public static func acknowledgement(_ bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        var reader = Reader(bytes)
        var isAck = false
        var msgId: Range<Int>?
        let complete = reader.object { reader, key in
            switch key {
            case "type":
                guard !isAck, let value = reader.string(), reader.equals(value, "ACK") else { return false }
                isAck = true
            case "data":
                guard msgId == nil else { return false }
                let inner = reader.object { reader, key in
                    guard key == "msg_id", msgId == nil, let value = reader.string() else { return false }
                    msgId = value
                    return true
                }
                guard inner, msgId != nil else { return false }
            default: return false
            }
            return true
        }
        guard complete, reader.atEnd, isAck else { return nil }
        return msgId
    }

    /// A cursor over JSON bytes that knows just enough: objects, and strings without escapes.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        var atEnd: Bool {
            mutating get {
                skipSpace()
                return index == bytes.count
            }
        }

        mutating func skipSpace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            skipSpace()
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        /// A string of printable ASCII without escapes: its content's range.
        /// (Anything else, valid or not, is the full parser's to judge.)
        mutating func string() -> Range<Int>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    return start..<(index - 1)
                }
                if byte == UInt8(ascii: "\\") || byte < 0x20 || byte > 0x7E { return nil }
                index += 1
            }
            return nil
        }

        /// An object whose members `member` reads (it is handed each key, as
        /// text, with the cursor after the colon); false when it refuses one
        /// or the object is malformed.
        mutating func object(_ member: (inout Reader, String) -> Bool) -> Bool {
            guard take(UInt8(ascii: "{")) else { return false }
            if take(UInt8(ascii: "}")) { return true }
            while true {
                guard let key = string(), take(UInt8(ascii: ":")) else { return false }
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[key]), as: UTF8.self)
                guard member(&self, name) else { return false }
                if take(UInt8(ascii: ",")) { continue }
                return take(UInt8(ascii: "}"))
            }
        }

        func equals(_ range: Range<Int>, _ text: StaticString) -> Bool {
            guard range.count == text.utf8CodeUnitCount else { return false }
            let expected = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
            return UnsafeRawBufferPointer(rebasing: bytes[range]).elementsEqual(expected)
        }
    }
}
