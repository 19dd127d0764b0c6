import Common
import Crypto
import CryptoExtras
import Foundation

/// Passwords as memory-hard scrypt hashes with a per-user salt
/// (ARCHITECTURE.md, "Storage"): `scrypt$N$r$p$<salt hex>$<hash hex>`.
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

/// A few threads of their own for password hashing, so that 35 ms of scrypt
/// never runs on the store's request path or the shared task pool, with a
/// bounded queue: when it is full, a login is refused at once (the server
/// is busy) rather than queued without limit.
final class HashingPool: Sendable {
    private struct Job: Sendable {
        let work: @Sendable () -> Void
    }

    private let condition = NSCondition()
    private let queue = MutexBox<[Job]>([])
    let maximumWaiting: Int

    init(threads: Int, maximumWaiting: Int) {
        self.maximumWaiting = maximumWaiting
        for index in 0..<max(1, threads) {
            let thread = Thread { [self] in loop() }
            thread.name = "udpchat-hashing-\(index)"
            thread.start()
        }
    }

    /// Runs `work` on the pool; nil when the queue is full.
    func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let accepted = queue.mutate { jobs -> Bool in
                guard jobs.count < maximumWaiting else { return false }
                jobs.append(Job { continuation.resume(returning: work()) })
                return true
            }
            guard accepted else {
                continuation.resume(returning: nil)
                return
            }
            condition.lock()
            condition.signal()
            condition.unlock()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            var job = queue.mutate { $0.isEmpty ? nil : $0.removeFirst() }
            while job == nil {
                condition.wait()
                job = queue.mutate { $0.isEmpty ? nil : $0.removeFirst() }
            }
            condition.unlock()
            job?.work()
        }
    }
}

/// Failed logins per account: after `limit` failures within `window`, the
/// account takes no more attempts until the window has passed since the
/// first of them. In memory; not thread-safe.
struct LoginGuard {
    let limit: Int
    let window: UInt64
    private var failures: [String: (count: Int, since: UInt64)] = [:]

    init(limit: Int, window: UInt64) {
        self.limit = limit
        self.window = window
    }

    /// Seconds to wait before the account may try again, or nil if it may now.
    mutating func wait(for email: String, now: UInt64) -> Int? {
        guard let entry = failures[email] else { return nil }
        if now &- entry.since >= window {
            failures[email] = nil
            return nil
        }
        guard entry.count >= limit else { return nil }
        return Int((window - (now &- entry.since)) / 1_000_000_000) + 1
    }

    mutating func failed(_ email: String, now: UInt64) {
        var entry = failures[email] ?? (0, now)
        if now &- entry.since >= window { entry = (0, now) }
        entry.count += 1
        failures[email] = entry
        if failures.count > 100_000 { failures = failures.filter { now &- $0.value.since < window } }
    }

    mutating func succeeded(_ email: String) { failures[email] = nil }
}
