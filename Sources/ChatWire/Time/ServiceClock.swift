import Foundation

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
