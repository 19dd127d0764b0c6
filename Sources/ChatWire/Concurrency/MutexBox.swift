import Foundation

/// A value behind a lock, for the few places that fill a reference after
/// construction (a callback that must reach an object made after it).
public final class MutexBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    public init(_ value: Value) { stored = value }

    public var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }

    /// Changes the value under the lock.
    public func mutate<T>(_ change: (inout Value) -> T) -> T { lock.withLock { change(&stored) } }
}
