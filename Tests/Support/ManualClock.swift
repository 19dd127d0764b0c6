import ChatWire
import Synchronization

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
        precondition(duration >= .zero, "a clock moves forward")
        now.withLock {
            $0.monotonic += duration.nanoseconds
            $0.wall += duration.milliseconds
        }
    }
}
