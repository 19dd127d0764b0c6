import Crypto

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// AES-256-GCM under one session's key, as docs/protocol.md §3.1 fixes it:
/// 12-byte IV, the 16-byte tag appended to the ciphertext, no associated
/// data, the same key in both directions.
public struct SessionCipher: Sendable {
    private let key: SymmetricKey

    /// The key's raw bytes. Only the client, the edge and `udpchat-keys` hold them.
    public let keyBytes: [UInt8]

    /// Fails unless `keyBytes` is 32 bytes long.
    public init?(keyBytes: [UInt8]) {
        guard keyBytes.count == WireSpec.sessionKeyBytes else { return nil }
        self.keyBytes = keyBytes
        self.key = SymmetricKey(data: keyBytes)
    }

    /// A new random session key (docs/protocol.md §2.2, step 2).
    public static func random() -> SessionCipher {
        SessionCipher(keyBytes: SecureRandom.bytes(WireSpec.sessionKeyBytes))!
    }

    /// Encrypts `plaintext` with `nonce` (12 bytes) and returns ciphertext ‖ tag.
    public func seal(_ plaintext: [UInt8], nonce: [UInt8]) -> [UInt8] {
        // A 12-byte nonce and a 32-byte key cannot make AES-GCM fail.
        let box = try! AES.GCM.seal(plaintext, using: key, nonce: try! AES.GCM.Nonce(data: nonce))
        var out = [UInt8](box.ciphertext)
        out.append(contentsOf: box.tag)
        return out
    }

    /// Opens ciphertext ‖ tag; nil when the tag does not verify or the
    /// lengths are wrong. Nothing else about the failure is reported, so an
    /// attacker learns nothing from it.
    public func open(_ sealed: [UInt8], nonce: [UInt8]) -> [UInt8]? {
        guard nonce.count == WireSpec.nonceBytes, sealed.count >= WireSpec.tagBytes,
            let gcmNonce = try? AES.GCM.Nonce(data: nonce)
        else { return nil }
        let split = sealed.count - WireSpec.tagBytes
        guard let box = try? AES.GCM.SealedBox(nonce: gcmNonce, ciphertext: sealed[..<split], tag: sealed[split...]),
            let plaintext = try? AES.GCM.open(box, using: key)
        else { return nil }
        return [UInt8](plaintext)
    }
}

/// Bytes from the system CSPRNG (getrandom on Linux).
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { fill($0) }
        return out
    }

    /// Fills `buffer` from the system CSPRNG in one call: arc4random_buf
    /// (glibc 2.36 and later, and the BSDs, draw it from getrandom(2)),
    /// where SystemRandomNumberGenerator makes one system call per 8 bytes.
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        arc4random_buf(base, buffer.count)
    }

    /// Bytes from the CSPRNG drawn a few kilobytes at a time: each as random
    /// as ``bytes(_:)``'s, at a fraction of the calls; every byte is handed
    /// out once. Not thread-safe: one pool per thread.
    public struct Pool: Sendable {
        private var pool: [UInt8] = []
        private var next = 0
        /// Implementation constant: bytes drawn at once.
        static let size = 4096

        public init() {}

        /// The next `count` (at most 4096) bytes.
        public mutating func take(_ count: Int) -> [UInt8] {
            precondition(count <= Self.size)
            if next + count > pool.count {
                pool = SecureRandom.bytes(Self.size)
                next = 0
            }
            defer {
                for i in next..<(next + count) { pool[i] = 0 }
                next += count
            }
            return Array(pool[next..<(next + count)])
        }
    }

    /// 128 random bits as 32 lowercase hex characters: the form of every
    /// public identifier on the wire (docs/protocol.md §1.3).
    public static func identifier() -> String { Hex.encode(bytes(WireSpec.idBytes)) }
}
