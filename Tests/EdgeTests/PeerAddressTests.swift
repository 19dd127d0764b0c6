import Foundation
import NIOCore
import Testing

@testable import udpchat_edge

@Suite struct PeerAddressTests {
    @Test(arguments: ["192.0.2.1:5000", "[2001:db8::1]:443", "[::1]:9999", "0.0.0.0:1"])
    func theStoresTextReadsBackAsTheSameAddress(_ text: String) throws {
        let address = try #require(PeerAddress(text))
        #expect(address.description == text)
        #expect(PeerAddress(address.description) == address)
    }

    @Test(arguments: ["", "192.0.2.1", "192.0.2.1:0", "192.0.2.1:70000", "host.example:80", "[2001:db8::zz]:1", "300.1.1.1:5"])
    func textThatIsNotAnAddressIsRefused(_ text: String) {
        #expect(PeerAddress(text) == nil)
    }

    @Test func equalAddressesAreEqualWhicheverWayTheyCameIn() throws {
        let v4 = try SocketAddress(ipAddress: "198.51.100.7", port: 40_000)
        let v6 = try SocketAddress(ipAddress: "2001:db8:1:2::abcd", port: 53)
        #expect(PeerAddress(v4) == PeerAddress(ip: "198.51.100.7", port: 40_000))
        #expect(PeerAddress(v6) == PeerAddress(ip: "2001:db8:1:2::abcd", port: 53))
        #expect(PeerAddress(v4) != PeerAddress(ip: "198.51.100.7", port: 40_001))
        #expect(PeerAddress(v4) != PeerAddress(ip: "198.51.100.8", port: 40_000))
        // Back to a socket address the channel writes to: the same bytes and port.
        for original in [v4, v6] {
            let back = try #require(PeerAddress(original)).socketAddress
            #expect(back.ipAddress == original.ipAddress && back.port == original.port)
        }
    }

    @Test func sourcesAreCountedByAddressAndIPv6ByItsSlash64() throws {
        let a = try #require(PeerAddress(ip: "2001:db8:1:2::1", port: 1))
        let b = try #require(PeerAddress(ip: "2001:db8:1:2:ffff::9", port: 2))
        let c = try #require(PeerAddress(ip: "2001:db8:1:3::1", port: 1))
        #expect(a.source == b.source && a.source != c.source)
        #expect(PeerAddress(ip: "192.0.2.1", port: 1)?.source != PeerAddress(ip: "192.0.2.2", port: 1)?.source)
        #expect(PeerAddress(ip: "192.0.2.1", port: 1)?.source == PeerAddress(ip: "192.0.2.1", port: 9)?.source)
    }
}

extension PeerAddressTests {
    /// A link-local client is answered on the interface it wrote from.
    @Test func anIPv6ScopeSurvivesTheWayToTheMachineAndBack() throws {
        var raw = sockaddr_in6()
        raw.sin6_family = sa_family_t(AF_INET6)
        raw.sin6_port = UInt16(5000).bigEndian
        raw.sin6_scope_id = 3
        withUnsafeMutableBytes(of: &raw.sin6_addr) { $0[0] = 0xfe; $0[1] = 0x80; $0[15] = 1 }
        let peer = try #require(PeerAddress(SocketAddress(raw, host: "")))
        #expect(peer.scope == 3 && peer.ip == "fe80::1" && peer.port == 5000)
        guard case .v6(let back) = peer.socketAddress else { Issue.record("not IPv6"); return }
        #expect(back.address.sin6_scope_id == 3)
        #expect(peer != PeerAddress(ip: "fe80::1", port: 5000), "another interface is another address")
    }
}
