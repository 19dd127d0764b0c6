import ChatWire
import Testing

@testable import udpchat_store

/// The login guard on virtual time.
@Suite struct LoginGuardTests {
    static let second: UInt64 = 1_000_000_000
    static let window = 900 * second
    static let key = LoginGuard.Key(account: "a@example.com", source: "198.51.100.7")

    @Test func parallelGuessesCountBeforeTheirHashIsDone() {
        var guardian = LoginGuard(limit: 5, window: Self.window)
        // 66 attempts arrive before any password is judged: only the budget is admitted.
        let admitted = (0..<66).filter { _ in guardian.begin(Self.key, now: 0) == nil }.count
        #expect(admitted == 5)
        for _ in 0..<5 { guardian.finish(Self.key, failed: true, now: Self.second) }
        #expect(guardian.begin(Self.key, now: 2 * Self.second) != nil)
        // Once the window has passed since the first, the source may try again.
        #expect(guardian.begin(Self.key, now: Self.window + Self.second) == nil)
    }

    @Test func aLoginClearsTheFailuresAndUnjudgedAttemptsCostNothing() {
        var guardian = LoginGuard(limit: 2, window: Self.window)
        #expect(guardian.begin(Self.key, now: 0) == nil)
        guardian.finish(Self.key, failed: true, now: 0)
        #expect(guardian.begin(Self.key, now: 0) == nil)
        guardian.finish(Self.key, failed: false, now: 0)
        for _ in 0..<10 {
            #expect(guardian.begin(Self.key, now: 0) == nil)
            guardian.finish(Self.key, failed: nil, now: 0)
        }
        #expect(guardian.count == 0)
    }

    @Test func anotherSourceIsNotHeldBack() {
        var guardian = LoginGuard(limit: 2, window: Self.window)
        for _ in 0..<2 {
            #expect(guardian.begin(Self.key, now: 0) == nil)
            guardian.finish(Self.key, failed: true, now: 0)
        }
        #expect(guardian.begin(Self.key, now: 0) != nil)
        #expect(guardian.begin(LoginGuard.Key(account: Self.key.account, source: "203.0.113.9"), now: 0) == nil)
    }

    @Test func theTableIsBoundedUnderASprayOfAccounts() {
        var guardian = LoginGuard(limit: 5, window: Self.window, capacity: 1000)
        for n in 0..<10_000 {
            let key = LoginGuard.Key(account: "user\(n)@example.com", source: "198.51.100.7")
            #expect(guardian.begin(key, now: UInt64(n)) == nil)
            guardian.finish(key, failed: true, now: UInt64(n))
        }
        #expect(guardian.count <= 1000)
    }

    @Test func sourcesAreAddressesWithoutPortsAndIPv6ByItsSlash64() {
        #expect(SourceAddress.key(ofAddress: "198.51.100.7:4000") == "198.51.100.7")
        #expect(SourceAddress.key(ofAddress: "[2001:db8:1:2::5]:4000") == SourceAddress.key(ofAddress: "[2001:db8:1:2:ffff::1]:9"))
        #expect(SourceAddress.key(ofAddress: "[2001:db8:1:2::5]:4000") != SourceAddress.key(ofAddress: "[2001:db8:1:3::5]:4000"))
        #expect(SourceAddress.key(ofAddress: "") == "")
        #expect(SourceAddress.key(ofAddress: "[not-an-address]:1") == "")
    }
}
