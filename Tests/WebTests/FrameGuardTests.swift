import Testing

@testable import udpchat_web

/// What one WebSocket may send (FrameGuard): one JSON object per frame,
/// no larger than a datagram the edge reads, at a bounded rate.
struct FrameGuardTests {
    let second: UInt64 = 1_000_000_000
    let packet = Array(#"{"type":"SESSION_INIT","client_key":"AAAA"}"#.utf8)

    @Test func aJSONObjectWithinTheLimitsPasses() throws {
        var rules = FrameGuard(maxBytes: 8192, rate: 10, now: 0)
        try rules.admit(packet, now: 0)
        try rules.admit(Array(#"  {"type":"SECURE_MSG"}  "#.utf8), now: 0)
    }

    @Test(arguments: ["not json", "[1,2]", "\"text\"", "42", "{\"type\":", ""])
    func anythingButOneJSONObjectIsRefusedWithItsReason(_ text: String) {
        var rules = FrameGuard(maxBytes: 8192, rate: 10, now: 0)
        #expect(throws: FrameGuard.notJSON) { try rules.admit(Array(text.utf8), now: 0) }
        #expect(FrameGuard.notJSON.code == 1007 && FrameGuard.notJSON.reason == "each frame must be one JSON object")
    }

    @Test func aFrameOverTheDatagramLimitIsRefusedAndOneAtItPasses() throws {
        var rules = FrameGuard(maxBytes: 100, rate: 10, now: 0)
        let padded = { (size: Int) -> [UInt8] in
            Array(#"{"pad":""#.utf8) + Array(repeating: UInt8(ascii: "x"), count: size - 10) + Array(#""}"#.utf8)
        }
        try rules.admit(padded(100), now: 0)
        #expect(throws: FrameGuard.oversize(limit: 100)) { try rules.admit(padded(101), now: 0) }
        #expect(FrameGuard.oversize(limit: 100).code == 1009)
        #expect(FrameGuard.oversize(limit: 100).reason == "frame over 100 bytes, the largest datagram")
    }

    /// Twice the rate at once, then the rate: a client that keeps above
    /// it is refused, one that keeps to it never is.
    @Test func theRateHoldsAfterABurstOfTwiceIt() throws {
        var rules = FrameGuard(maxBytes: 8192, rate: 10, now: 0)
        for _ in 0..<20 { try rules.admit(packet, now: 0) }
        #expect(throws: FrameGuard.flood(rate: 10)) { try rules.admit(packet, now: 0) }
        #expect(FrameGuard.flood(rate: 10).code == 1008 && FrameGuard.flood(rate: 10).reason == "more than 10 frames a second")

        var steady = FrameGuard(maxBytes: 8192, rate: 10, now: 0)
        for step in 1...100 { try steady.admit(packet, now: UInt64(step) * second / 10) }
        // A second later the bucket is full again: twenty more at once pass.
        for _ in 0..<20 { try steady.admit(packet, now: 12 * second) }
        #expect(throws: FrameGuard.flood(rate: 10)) { try steady.admit(packet, now: 12 * second) }
    }

    /// A refused frame's rule comes before its content: a flood of bad
    /// frames is refused for the flood, not parsed at length.
    @Test func aFloodIsRefusedBeforeItsFramesAreRead() throws {
        var rules = FrameGuard(maxBytes: 8192, rate: 1, now: 0)
        try rules.admit(packet, now: 0)
        try rules.admit(packet, now: 0)
        #expect(throws: FrameGuard.flood(rate: 1)) { try rules.admit(Array("junk".utf8), now: 0) }
    }
}

/// Which pages may open WebSockets.
struct OriginPolicyTests {
    @Test func byDefaultThePagesOwnOriginByAddressAndProgramsOnly() throws {
        let policy = try OriginPolicy("")
        #expect(policy.admits(origin: nil, host: "chat.example.com"))
        #expect(policy.admits(origin: "http://127.0.0.1:8000", host: "127.0.0.1:8000"))
        #expect(policy.admits(origin: "http://localhost:8000", host: "localhost:8000"))
        #expect(policy.admits(origin: "https://[::1]:8443", host: "[::1]:8443"))
        #expect(!policy.admits(origin: "https://evil.example", host: "chat.example.com"))
        #expect(!policy.admits(origin: "http://127.0.0.1:8001", host: "127.0.0.1:8000"))
        #expect(!policy.admits(origin: "null", host: "127.0.0.1:8000"))
        #expect(!policy.admits(origin: "chrome-extension://abcdef", host: "127.0.0.1:8000"))
        // A name could be anyone's pointed at this address (DNS rebinding):
        // its own origin by name is allowed only when listed.
        #expect(!policy.admits(origin: "http://rebound.example:8000", host: "rebound.example:8000"))
        #expect(!policy.admits(origin: "https://chat.example.com", host: "chat.example.com"))
        // Not a page's origin: a program, which could claim any origin.
        #expect(policy.admits(origin: "ws://127.0.0.1", host: "127.0.0.1:8000"))
    }

    @Test func listedOriginsAreAdmittedBesideTheOwnOne() throws {
        let policy = try OriginPolicy(" https://Chat.Example.com , http://localhost:5173")
        #expect(policy.admits(origin: "https://chat.example.com", host: "bridge.internal:8000"))
        #expect(policy.admits(origin: "http://localhost:5173", host: "bridge.internal:8000"))
        #expect(!policy.admits(origin: "https://other.example.com", host: "bridge.internal:8000"))
    }

    @Test func aStarAdmitsAny() throws {
        #expect(try OriginPolicy("*").admits(origin: "https://anything.example", host: "x"))
    }

    @Test(arguments: ["chat.example.com", "https://chat.example.com/path", "ftp://x", "*,https://a.example"])
    func somethingThatIsNoOriginIsAConfigurationError(_ text: String) {
        #expect(throws: (any Error).self) { try OriginPolicy(text) }
    }
}
