import ChatWire
import Testing

@Suite struct SourceAddressTests {
    @Test func ipv4IsItselfAndIPv6CountsByItsSlash64() {
        #expect(SourceAddress.key(ofIP: "192.0.2.1") == "192.0.2.1")
        #expect(SourceAddress.key(ofIP: "2001:db8:1:2::1") == SourceAddress.key(ofIP: "2001:db8:1:2:ffff:ffff:ffff:ffff"))
        #expect(SourceAddress.key(ofIP: "2001:db8:1:2::1") == "20010db800010002::/64")
        #expect(SourceAddress.key(ofIP: "2001:db8:1:3::1") != SourceAddress.key(ofIP: "2001:db8:1:2::1"))
        // An IPv4 client on a dual-stack socket is its IPv4 address, not one /64 shared by every IPv4 client.
        #expect(SourceAddress.key(ofIP: "::ffff:192.0.2.1") == "192.0.2.1")
        #expect(SourceAddress.key(ofIP: "::ffff:192.0.2.2") != SourceAddress.key(ofIP: "::ffff:192.0.2.1"))
    }

    @Test func addressesWithPortsLoseThePort() {
        #expect(SourceAddress.key(ofAddress: "192.0.2.1:5000") == "192.0.2.1")
        #expect(SourceAddress.key(ofAddress: "[2001:db8::1]:5000") == "20010db800000000::/64")
        #expect(SourceAddress.key(ofAddress: "[nonsense]:1") == "")
        #expect(SourceAddress.key(ofAddress: "no port") == "")
    }
}
