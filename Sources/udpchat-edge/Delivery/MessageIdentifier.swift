import ChatWire
import Crypto

/// A copy's `msg_id`: 16 bytes, sent as 32 lowercase hex characters
/// (docs/protocol.md §6.2; clients treat it as opaque and echo it in their ACK).
///
/// Each transmission of a copy has its own: the room's key, the event's
/// sequence number and the transmission's number (1 to 255), mixed with the
/// session's salt. So an ACK names the very transmission it answers, and
/// every ACK is a round-trip sample, as QUIC's packet numbers make every
/// acknowledgement one (RFC 9002 §5.1), where TCP can sample only segments
/// sent once (Karn's rule) and starves on a lossy or overloaded path. Every
/// session's copy has an id of its own (docs/protocol.md §12 item 15), the ACK
/// names its event without a table of ids, and the ids are the same on every
/// edge, before and after a restart (unless the session was given up as
/// unreachable meanwhile: its salt then moves on, and an ACK that crosses
/// the restart costs one retransmission). Clients lose nothing by it: the web
/// client shows a MESSAGE once by its `message_id` whatever the `msg_id`,
/// and the original server's copies, all alike, were shown again by clients
/// that did not do so. Other broadcasts (room lists, notices) carry a random
/// id, with the transmission's number mixed in the same way.
struct MessageIdentifier: Hashable {
    var high: UInt64
    var low: UInt64

    /// Sequence numbers use the low 56 bits; the top 8 carry the transmission.
    static let sequenceMask: UInt64 = (1 << 56) - 1

    /// Transmission `transmission` of the copy of room event `seq` of the
    /// room with `roomKey` for the session with `salt`.
    static func roomEvent(roomKey: UInt64, seq: UInt64, salt: UInt64, transmission: Int) -> MessageIdentifier {
        MessageIdentifier(high: roomKey ^ salt, low: ((seq & sequenceMask) | UInt64(UInt8(clamping: transmission)) << 56) ^ salt)
    }

    /// The room key, sequence number and transmission of a room event's copy, given the session's salt.
    func roomEvent(salt: UInt64) -> (roomKey: UInt64, seq: UInt64, transmission: Int) {
        let low = self.low ^ salt
        return (high ^ salt, low & Self.sequenceMask, Int(low >> 56))
    }

    /// Transmission `transmission` of a copy whose first has this id.
    func transmission(_ transmission: Int) -> MessageIdentifier {
        MessageIdentifier(high: high, low: low ^ UInt64(UInt8(clamping: transmission - 1)) << 56)
    }

    /// Which transmission of the copy whose first has id `first` this is; nil for another copy's.
    func transmission(of first: MessageIdentifier) -> Int? {
        guard high == first.high, (low ^ first.low) & Self.sequenceMask == 0 else { return nil }
        return Int((low ^ first.low) >> 56) + 1
    }

    /// A session's salt: 8 bytes of the SHA-256 of its id (the same on every edge).
    static func salt(sessionId: String) -> UInt64 {
        var salt: UInt64 = 0
        for byte in SHA256.hash(data: Array(sessionId.utf8)).prefix(8) { salt = salt << 8 | UInt64(byte) }
        return salt
    }

    /// The salt that follows `salt` (a bijection: a session's salts do not repeat soon).
    static func nextSalt(_ salt: UInt64) -> UInt64 { salt &* 0x9E37_79B9_7F4A_7C15 &+ 1 }

    /// A random id, for broadcasts outside the rooms' sequences.
    static func random() -> MessageIdentifier {
        var generator = SystemRandomNumberGenerator()
        return MessageIdentifier(high: generator.next(), low: generator.next())
    }

    /// A room's key: the first 8 bytes of the SHA-256 of its id. Room ids are
    /// random already, but hashing keeps any id (an imported one) apart.
    static func roomKey(_ roomId: String) -> UInt64 {
        var key: UInt64 = 0
        for byte in SHA256.hash(data: Array(roomId.utf8)).prefix(8) { key = key << 8 | UInt64(byte) }
        return key
    }

    /// Parses the hex an ACK carries; nil for anything but 32 lowercase hex characters.
    init?(hex text: String) {
        guard text.utf8.count == 2 * WireSpec.idBytes, let bytes = Hex.decode(text) else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<8 {
            high = high << 8 | UInt64(bytes[i])
            low = low << 8 | UInt64(bytes[i + 8])
        }
        self.init(high: high, low: low)
    }

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends the 32 hex characters.
    func appendHex(to bytes: inout [UInt8]) {
        Self.appendHex(high, to: &bytes)
        Self.appendHex(low, to: &bytes)
    }

    private static func appendHex(_ word: UInt64, to bytes: inout [UInt8]) {
        var shift: UInt64 = 60
        for _ in 0..<16 {
            bytes.append(digits[Int((word >> shift) & 0xf)])
            shift &-= 4
        }
    }

    var hex: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        appendHex(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}
