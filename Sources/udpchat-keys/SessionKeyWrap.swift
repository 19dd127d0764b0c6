import ChatWire
import Crypto

/// Seals session keys under the key-encryption key (KEK) for storage, so
/// the database never holds a usable session key (docs/protocol.md §12, item 8).
///
/// Format: `0x01 ‖ nonce (12) ‖ AES-256-GCM(key) ‖ tag (16)`, 61 bytes for a
/// 32-byte key. The session id is authenticated as associated data, so a
/// wrapped key copied to another session's row does not unwrap.
struct SessionKeyWrap: Sendable {
    static let version: UInt8 = 1
    private let kek: SymmetricKey

    init?(kekBytes: [UInt8]) {
        guard kekBytes.count == 32 else { return nil }
        kek = SymmetricKey(data: kekBytes)
    }

    private static func associatedData(_ sessionId: String) -> [UInt8] {
        Array("udpchat session key v1:\(sessionId)".utf8)
    }

    func wrap(sessionKey: [UInt8], sessionId: String) -> [UInt8] {
        let nonce = SecureRandom.bytes(WireSpec.nonceBytes)
        let box = try! AES.GCM.seal(
            sessionKey, using: kek, nonce: try! AES.GCM.Nonce(data: nonce), authenticating: Self.associatedData(sessionId))
        return [Self.version] + nonce + [UInt8](box.ciphertext) + [UInt8](box.tag)
    }

    /// The session key, or nil when `wrapped` was not made by this KEK for `sessionId`.
    func unwrap(_ wrapped: [UInt8], sessionId: String) -> [UInt8]? {
        let overhead = 1 + WireSpec.nonceBytes + WireSpec.tagBytes
        guard wrapped.count > overhead, wrapped[0] == Self.version,
            let nonce = try? AES.GCM.Nonce(data: wrapped[1..<13])
        else { return nil }
        let tagStart = wrapped.count - WireSpec.tagBytes
        guard let box = try? AES.GCM.SealedBox(nonce: nonce, ciphertext: wrapped[13..<tagStart], tag: wrapped[tagStart...]),
            let key = try? AES.GCM.open(box, using: kek, authenticating: Self.associatedData(sessionId))
        else { return nil }
        return [UInt8](key)
    }
}
