import ChatWire
import Crypto
import CryptoExtras
import Foundation

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
    /// Jobs run so far.
    let completed = MutexBox(0)

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
                jobs.append(
                    Job { [completed] in
                        let result = work()
                        completed.mutate { $0 += 1 }
                        continuation.resume(returning: result)
                    })
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

/// Password guesses, per account and per source (the client's IP address,
/// an IPv6 address by its /64): after `limit` failed attempts within
/// `window` from one source, that source may not try the account again
/// until the window has passed since the first; the owner, elsewhere, is
/// not locked out. An attempt counts from the moment it is admitted, before
/// its password is hashed, so parallel guesses cannot all slip past the
/// check. The table is bounded: past `capacity` entries, expired ones go,
/// then the oldest. In memory; time passed in; not thread-safe.
struct LoginGuard {
    struct Key: Hashable {
        var account: String
        var source: String
    }

    private struct Entry {
        var failures = 0
        var inFlight = 0
        var since: UInt64
    }

    let limit: Int
    let window: UInt64
    let capacity: Int
    private var entries: [Key: Entry] = [:]

    init(limit: Int, window: UInt64, capacity: Int = 100_000) {
        self.limit = limit
        self.window = window
        self.capacity = capacity
    }

    var count: Int { entries.count }

    /// Admits an attempt (nil), or says how many seconds to wait. An
    /// admitted attempt must be finished with ``finish(_:failed:now:)``.
    mutating func begin(_ key: Key, now: UInt64) -> Int? {
        var entry = entries[key] ?? Entry(since: now)
        if entry.inFlight == 0, now &- entry.since >= window { entry = Entry(since: now) }
        if entry.failures + entry.inFlight >= limit {
            entries[key] = entry
            return Int((window - min(window, now &- entry.since)) / 1_000_000_000) + 1
        }
        entry.inFlight += 1
        entries[key] = entry
        bound(now: now)
        return nil
    }

    /// An admitted attempt ended: `failed` true for a wrong password, false
    /// for a login, nil when the password was never judged (the server was
    /// busy, or no password was given).
    mutating func finish(_ key: Key, failed: Bool?, now: UInt64) {
        guard var entry = entries[key] else { return }
        entry.inFlight = max(0, entry.inFlight - 1)
        switch failed {
        case true?: entry.failures += 1
        case false?: entry.failures = 0
        case nil: break
        }
        if entry.failures == 0 && entry.inFlight == 0 {
            entries[key] = nil
        } else {
            entries[key] = entry
        }
    }

    private mutating func bound(now: UInt64) {
        guard entries.count > capacity else { return }
        entries = entries.filter { $0.value.inFlight > 0 || now &- $0.value.since < window }
        guard entries.count > capacity else { return }
        // Still full of live entries (a spray of guesses): the oldest go, down to nine tenths.
        let keep = capacity * 9 / 10
        let oldest = entries.filter { $0.value.inFlight == 0 }.sorted { $0.value.since < $1.value.since }
        for (key, _) in oldest.prefix(max(0, entries.count - keep)) { entries[key] = nil }
    }
}
