import ChatWire
import Foundation

/// A client's UDP address as the machine sees it: an IPv4 or IPv6 address
/// and a port, compared and hashed as integers. The machine knows no socket
/// library; the rim converts to and from its own address type
/// (`PeerAddress+NIO.swift`).
///
/// The address bytes are kept in network order, as a socket address holds
/// them, so converting either way copies integers only.
struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    enum Family: UInt8, Sendable { case v4, v6 }

    let family: Family
    /// IPv6: the first 8 address bytes; IPv4: zero.
    let high: UInt64
    /// IPv6: the last 8 address bytes; IPv4: the 4 address bytes in the low half.
    let low: UInt64
    /// The port, host order.
    let port: UInt16
    /// IPv6: the interface a link-local address is on (0: none); IPv4: 0.
    let scope: UInt32

    init(family: Family, high: UInt64, low: UInt64, port: UInt16, scope: UInt32 = 0) {
        self.family = family
        self.high = family == .v4 ? 0 : high
        self.low = family == .v4 ? low & 0xFFFF_FFFF : low
        self.port = port
        self.scope = family == .v4 ? 0 : scope
    }

    /// An address from its text (`192.0.2.1`, `2001:db8::1`) and a port;
    /// nil when the text is not an IP address.
    init?(ip: String, port: Int) {
        guard (0...65535).contains(port) else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, ip, &v4) == 1 {
            self.init(family: .v4, high: 0, low: UInt64(v4.s_addr), port: UInt16(port))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, ip, &v6) == 1 else { return nil }
        let (high, low) = withUnsafeBytes(of: &v6) { raw in
            (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        self.init(family: .v6, high: high, low: low, port: UInt16(port))
    }

    /// The address as text, without the port.
    var ip: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch family {
        case .v4:
            var v4 = in_addr(s_addr: UInt32(truncatingIfNeeded: low))
            guard inet_ntop(AF_INET, &v4, &buffer, socklen_t(buffer.count)) != nil else { return "" }
        case .v6:
            var v6 = in6_addr()
            withUnsafeMutableBytes(of: &v6) { raw in
                raw.storeBytes(of: high, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
            }
            guard inet_ntop(AF_INET6, &v6, &buffer, socklen_t(buffer.count)) != nil else { return "" }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The key its source is counted under: the address, IPv6 by /64
    /// (``SourceAddress``).
    var source: String { SourceAddress.key(ofIP: ip) }

    /// As the store keeps it: `ip:port`, `[ipv6]:port`.
    var description: String { family == .v6 ? "[\(ip)]:\(port)" : "\(ip):\(port)" }

    /// An address as the store keeps it (``description``); nil for any
    /// other text.
    init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        self.init(ip: String(host), port: port)
    }
}
