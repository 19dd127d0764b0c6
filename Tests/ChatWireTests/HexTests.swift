import ChatWire
import Testing

@Suite struct HexTests {
    @Test func encodesLowercase() {
        #expect(Hex.encode([]) == "")
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
    }

    @Test(arguments: [
        ("", [UInt8]()),
        ("00ff", [0x00, 0xff]),
        ("deadbeef", [0xde, 0xad, 0xbe, 0xef]),
    ])
    func decodesLowercase(text: String, bytes: [UInt8]) {
        #expect(Hex.decode(text) == bytes)
    }

    /// The original accepted other spellings of the same bytes, which let a
    /// captured packet be replayed (docs/protocol.md §12 item 3).
    @Test(arguments: ["0", "abc", "DEADBEEF", "dE", "de ad", " dead", "0x00", "zz", "dé"])
    func rejectsAnythingButLowercaseHexPairs(text: String) {
        #expect(Hex.decode(text) == nil)
    }

    @Test func roundTrips() {
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        #expect(Hex.decode(Hex.encode(bytes)) == bytes)
    }
}
