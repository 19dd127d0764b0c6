import Foundation
import NIOCore

/// The rim's conversions between NIO's socket addresses and the machine's
/// ``PeerAddress``: integers copied, no text.
extension PeerAddress {
    /// Nil for an address that is neither IPv4 nor IPv6.
    init?(_ address: SocketAddress) {
        switch address {
        case .v4(let v4):
            let raw = v4.address
            self.init(family: .v4, high: 0, low: UInt64(raw.sin_addr.s_addr), port: UInt16(bigEndian: raw.sin_port))
        case .v6(let v6):
            var raw = v6.address
            let (high, low) = withUnsafeBytes(of: &raw.sin6_addr) { bytes in
                (bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self), bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            }
            self.init(family: .v6, high: high, low: low, port: UInt16(bigEndian: raw.sin6_port), scope: raw.sin6_scope_id)
        case .unixDomainSocket:
            return nil
        }
    }

    var socketAddress: SocketAddress {
        switch family {
        case .v4:
            var raw = sockaddr_in()
            raw.sin_family = sa_family_t(AF_INET)
            raw.sin_port = port.bigEndian
            raw.sin_addr = in_addr(s_addr: UInt32(truncatingIfNeeded: low))
            return SocketAddress(raw, host: "")
        case .v6:
            var raw = sockaddr_in6()
            raw.sin6_family = sa_family_t(AF_INET6)
            raw.sin6_port = port.bigEndian
            raw.sin6_scope_id = scope
            withUnsafeMutableBytes(of: &raw.sin6_addr) { bytes in
                bytes.storeBytes(of: high, toByteOffset: 0, as: UInt64.self)
                bytes.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
            }
            return SocketAddress(raw, host: "")
        }
    }
}
