import ChatWire
import Testing

@testable import udpchat_keys

/// Session keys sealed under the key-encryption key, which only
/// udpchat-keys holds (docs/architecture.md, "The trust model").
@Suite struct SessionKeyWrapTests {
    static let sessionKey = [UInt8](0..<32)

    @Test func wrappedSessionKeyFromPythonUnwraps() throws {
        let wrap = try #require(SessionKeyWrap(kekBytes: [UInt8](repeating: 0xA5, count: 32)))
        let wrapped = try #require(
            Hex.decode(
                "010102030405060708090a0b0cd477ad863d356038e745b5bdf0a4aa5130740ce154f697829a073a11443cd5fe991c8ecf839a1e5a5130ede40028b756"
            ))
        let session = "00112233445566778899aabbccddeeff"
        #expect(wrap.unwrap(wrapped, sessionId: session) == Self.sessionKey)
        // Bound to its session: another session's row cannot use it.
        #expect(wrap.unwrap(wrapped, sessionId: "ffeeddccbbaa99887766554433221100") == nil)
        let again = wrap.wrap(sessionKey: Self.sessionKey, sessionId: session)
        #expect(again.count == 61 && again != wrapped)
        #expect(wrap.unwrap(again, sessionId: session) == Self.sessionKey)
        #expect(SessionKeyWrap(kekBytes: [UInt8](repeating: 1, count: 32))!.unwrap(again, sessionId: session) == nil)
    }
}
