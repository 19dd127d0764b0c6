import Common
import CryptoExtras
import Foundation

/// Passwords as memory-hard scrypt hashes with a per-user salt
/// (ARCHITECTURE.md, "Storage"): `scrypt$N$r$p$<salt hex>$<hash hex>`.
/// Checking one costs about 35 ms and 16 MiB, which is the point.
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

    /// Whether `password` matches `stored`; false for any hash this code cannot read.
    static func verify(_ password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$").map(String.init)
        guard parts.count == 6, parts[0] == "scrypt", let n = Int(parts[1]), let r = Int(parts[2]), let p = Int(parts[3]),
            n >= 2, n <= 1 << 20, r >= 1, r <= 32, p >= 1, p <= 16,
            let salt = Hex.decode(parts[4]), let expected = Hex.decode(parts[5]), !expected.isEmpty,
            let actual = try? derive(password, salt: salt, n: n, r: r, p: p, length: expected.count)
        else { return false }
        var difference: UInt8 = 0
        for i in 0..<expected.count { difference |= expected[i] ^ actual[i] }
        return difference == 0
    }

    private static func derive(_ password: String, salt: [UInt8], n: Int, r: Int, p: Int, length: Int = 32) throws -> [UInt8] {
        let key = try KDF.Scrypt.deriveKey(
            from: Array(password.utf8), salt: salt, outputByteCount: length, rounds: n, blockSize: r, parallelism: p)
        return key.withUnsafeBytes { [UInt8]($0) }
    }
}
