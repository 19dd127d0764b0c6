import ChatWire
import CryptoExtras

/// Passwords as memory-hard scrypt hashes with a per-user salt
/// (docs/architecture.md, "Storage"): `scrypt$N$r$p$<salt hex>$<hash hex>`.
/// Checking one costs about 35 ms and 16 MiB, which is the point.
///
/// Hashes imported from the original server are unsalted MD5, kept as
/// `md5$<hex>`: they are checked once and replaced by scrypt on the next
/// successful login.
enum PasswordHash {
    /// Implementation constants: N = 2^14, r = 8, p = 1 is scrypt's
    /// interactive-login recommendation; 16-byte salt, 32-byte hash.
    static let cost = 1 << 14
    static let blockSize = 8
    static let parallelism = 1

    static func make(_ password: String) throws -> String {
        let salt = SecureRandom.bytes(16)
        let hash = try derive(password, salt: salt, n: cost, r: blockSize, p: parallelism)
        return "scrypt$\(cost)$\(blockSize)$\(parallelism)$\(Hex.encode(salt))$\(Hex.encode(hash))"
    }

    /// The stored form of a hash the original server made (lowercase hex MD5).
    static func legacy(md5Hex: String) -> String? {
        let hex = md5Hex.lowercased()
        guard hex.count == 32, Hex.decode(hex) != nil else { return nil }
        return "md5$" + hex
    }

    /// Whether the hash should be replaced by a scrypt one after a successful login.
    static func isLegacy(_ stored: String) -> Bool { stored.hasPrefix("md5$") }

    /// Whether `password` matches `stored`; false for any hash this code cannot read.
    static func verify(_ password: String, against stored: String) -> Bool {
        if isLegacy(stored) {
            let digest = Hex.encode([UInt8](Insecure.MD5.hash(data: Array(password.utf8))))
            return constantTimeEqual(Array(digest.utf8), Array(stored.dropFirst(4).utf8))
        }
        let parts = stored.split(separator: "$").map(String.init)
        guard parts.count == 6, parts[0] == "scrypt", let n = Int(parts[1]), let r = Int(parts[2]), let p = Int(parts[3]),
            n >= 2, n <= 1 << 20, r >= 1, r <= 32, p >= 1, p <= 16,
            let salt = Hex.decode(parts[4]), let expected = Hex.decode(parts[5]), !expected.isEmpty,
            let actual = try? derive(password, salt: salt, n: n, r: r, p: p, length: expected.count)
        else { return false }
        return constantTimeEqual(expected, actual)
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    private static func derive(_ password: String, salt: [UInt8], n: Int, r: Int, p: Int, length: Int = 32) throws -> [UInt8] {
        let key = try KDF.Scrypt.deriveKey(
            from: Array(password.utf8), salt: salt, outputByteCount: length, rounds: n, blockSize: r, parallelism: p)
        return key.withUnsafeBytes { [UInt8]($0) }
    }
}
