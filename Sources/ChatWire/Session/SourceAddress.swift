import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The unit every per-source limit counts by: an IPv4 address, or an IPv6
/// address by its /64 (one host, or one home, usually holds a whole /64,
/// so counting single IPv6 addresses would give it 2^64 budgets). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
public enum SourceAddress {
    /// The source key of an IP address in text (`192.0.2.1`, `2001:db8::1`).
    public static func key(ofIP ip: String) -> String {
        guard ip.contains(":") else { return ip }
        var bytes = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET6, ip, &bytes) == 1 else { return ip }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            return bytes[12..<16].map(String.init).joined(separator: ".")
        }
        return Hex.encode(Array(bytes.prefix(8))) + "::/64"
    }

    /// The source key of `host:port` or `[v6]:port` text; "" when it has no
    /// port or the bracketed part is not an IPv6 address.
    public static func key(ofAddress text: String) -> String {
        guard let colon = text.lastIndex(of: ":") else { return "" }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            var bytes = [UInt8](repeating: 0, count: 16)
            guard inet_pton(AF_INET6, host, &bytes) == 1 else { return "" }
        }
        return key(ofIP: host)
    }
}
