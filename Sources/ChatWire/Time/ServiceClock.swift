import Foundation
import Synchronization

/// The time a service reads, handed to it so a test can set it: monotonic
/// nanoseconds for spans, deadlines and rates; wall-clock milliseconds for
/// what is stored and compared across processes.
public protocol ServiceClock: Sendable {
    /// Monotonic nanoseconds (``MonotonicClock``).
    func monotonic() -> UInt64
    /// Milliseconds since 1970.
    func wallMilliseconds() -> Int64
}

extension ServiceClock {
    /// Seconds since 1970.
    public func wallSeconds() -> Int64 { wallMilliseconds() / 1000 }
}

/// The system's clocks.
public struct SystemClock: ServiceClock {
    public init() {}
    public func monotonic() -> UInt64 { MonotonicClock.now() }
    public func wallMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

/// A clock that moves only when told, for tests.
public final class ManualClock: ServiceClock {
    private let now: Mutex<(monotonic: UInt64, wall: Int64)>

    /// Starts at `wallMilliseconds` (default: the system's now) and a
    /// monotonic reading of an hour after boot.
    public init(wallMilliseconds: Int64 = SystemClock().wallMilliseconds()) {
        now = Mutex((3_600_000_000_000, wallMilliseconds))
    }

    public func monotonic() -> UInt64 { now.withLock { $0.monotonic } }
    public func wallMilliseconds() -> Int64 { now.withLock { $0.wall } }

    /// Moves both clocks forward.
    public func advance(_ duration: Duration) {
        now.withLock {
            $0.monotonic += duration.nanoseconds
            $0.wall += duration.milliseconds
        }
    }
}
