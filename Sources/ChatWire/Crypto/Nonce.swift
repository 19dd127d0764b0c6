/// The 12-byte AES-GCM IVs of docs/protocol.md §3.3 and what the server reads
/// from them.
///
/// Clients build `(T << 32) | R`: bytes 0–7 a big-endian nanosecond
/// timestamp, bytes 8–11 random. Until the year 2262 the top bit of byte 0
/// is 0 in every client nonce. The server sets that bit in every nonce it
/// makes and fills the rest from the CSPRNG, so a server packet sent back to
/// the server is recognised before any state changes (§12, items 5 and 6).
public enum Nonce {
    /// A fresh server nonce: 95 random bits with the top bit set.
    public static func server() -> [UInt8] {
        var nonce = SecureRandom.bytes(WireSpec.nonceBytes)
        nonce[0] |= 0x80
        return nonce
    }

    /// Server nonces drawn from a ``SecureRandom/Pool``: each as random as
    /// ``server()``'s, at a fraction of the system calls (the edge seals one
    /// per datagram). Not thread-safe: one per thread.
    public struct ServerPool: Sendable {
        private var random = SecureRandom.Pool()

        public init() {}

        public mutating func take() -> [UInt8] {
            var nonce = random.take(WireSpec.nonceBytes)
            nonce[0] |= 0x80
            return nonce
        }
    }

    /// A client nonce for `nanoseconds` since 1970 with 32 random bits, the
    /// way the existing clients make them.
    public static func client(nanoseconds: UInt64, random: [UInt8] = SecureRandom.bytes(4)) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: WireSpec.nonceBytes)
        let time = nanoseconds & ~(UInt64(1) << 63)
        for i in 0..<8 { nonce[i] = UInt8(truncatingIfNeeded: time >> (56 - 8 * UInt64(i))) }
        nonce[8..<12] = random[0..<4]
        return nonce
    }

    /// Whether `nonce` has the bit that only server nonces carry.
    public static func isServerNonce(_ nonce: [UInt8]) -> Bool {
        guard let first = nonce.first else { return false }
        return first & 0x80 != 0
    }

    /// The client's timestamp in a client nonce (bytes 0–7, big-endian).
    public static func timestamp(_ nonce: [UInt8]) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<min(8, nonce.count) { value = value << 8 | UInt64(nonce[i]) }
        return value
    }
}
