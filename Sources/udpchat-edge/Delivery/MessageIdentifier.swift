import Common
import Crypto

/// A copy's `msg_id`: 16 bytes, sent as 32 lowercase hex characters
/// (PROTOCOL.md §6.2; clients treat it as opaque and echo it in their ACK).
///
/// A room event's copy carries the room's key and the event's sequence
/// number, each mixed with the session's own salt: the same event has the
/// same id for a session on every transmission and on every edge, before
/// and after a restart (a client that drops repeated ids drops a copy sent
/// again after a restart too), every session's copy has an id of its own
/// (PROTOCOL.md §12 item 15), and the ACK names the event without a table
/// of ids. Other broadcasts (room lists, notices) carry random ids.
struct MessageIdentifier: Hashable {
    var high: UInt64
    var low: UInt64

    /// The copy of room event `seq` of the room with `roomKey` for the session with `salt`.
    static func roomEvent(roomKey: UInt64, seq: UInt64, salt: UInt64) -> MessageIdentifier {
        MessageIdentifier(high: roomKey ^ salt, low: seq ^ salt)
    }

    /// The room key and sequence number of a room event's copy, given the session's salt.
    func roomEvent(salt: UInt64) -> (roomKey: UInt64, seq: UInt64) { (high ^ salt, low ^ salt) }

    /// A session's salt: 8 bytes of the SHA-256 of its id (the same on every edge).
    static func salt(sessionId: String) -> UInt64 {
        var salt: UInt64 = 0
        for byte in SHA256.hash(data: Array(sessionId.utf8)).prefix(8) { salt = salt << 8 | UInt64(byte) }
        return salt
    }

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
