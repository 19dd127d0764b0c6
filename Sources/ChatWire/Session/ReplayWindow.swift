import DequeModule

/// Rejects a session's replayed datagrams with memory that does not grow
/// with the number of messages (docs/architecture.md, "Replay with the v1 nonce").
///
/// A client nonce starts with the client's nanosecond timestamp, and the
/// AES-GCM tag authenticates the nonce, so once the tag verifies the
/// timestamp is the client's own. The window keeps:
///
/// - `highest`, the greatest timestamp accepted;
/// - `floor`: every timestamp at or below it is rejected. It follows
///   `highest - span`, is raised when the set of remembered nonces reaches
///   its capacity, and starts at the persisted high-water mark when a session
///   is reloaded after a restart;
/// - the nonces accepted above the floor, so an exact repeat is rejected.
///
/// At capacity the oldest remembered nonce is not forgotten (which would let
/// it be replayed): the floor rises to its timestamp instead, so only late,
/// reordered packets can be refused, never a replay accepted.
///
/// Use it only after the packet's tag verified; otherwise a forger could
/// move the window. Not thread-safe: one session's datagrams are handled on
/// one event loop.
public struct ReplayWindow: Sendable {
    /// What the window says about a nonce.
    public enum Verdict: Equatable, Sendable {
        case accepted
        /// The same nonce was accepted before.
        case duplicate
        /// The timestamp is at or below the floor.
        case tooOld
    }

    /// How far below the highest timestamp a packet may arrive, in nanoseconds.
    public let span: UInt64
    /// How many nonces the window remembers at most.
    public let capacity: Int
    /// The greatest timestamp accepted so far (0 before the first).
    public private(set) var highest: UInt64
    /// Timestamps at or below this are rejected.
    public private(set) var floor: UInt64

    private struct Entry: Hashable, Comparable {
        var timestamp: UInt64
        var random: UInt32
        static func < (lhs: Entry, rhs: Entry) -> Bool {
            (lhs.timestamp, lhs.random) < (rhs.timestamp, rhs.random)
        }
    }

    /// The nonces accepted above the floor, in order. Clients send them in
    /// order, so a new one almost always goes at the end; a reordered one is
    /// found and placed by binary search. (A set plus a heap cost three
    /// times the memory, which is most of an idle session's.)
    private var seen = Deque<Entry>()

    /// Implementation constants: a minute absorbs any reordering a datagram
    /// path produces and ordinary client clock adjustments; 512 nonces cover
    /// more than eight packets a second over that minute.
    public static let defaultSpan: UInt64 = 60 * 1_000_000_000
    public static let defaultCapacity = 512

    /// A window that rejects everything at or below `floor`: 0 for a new
    /// session, the persisted high-water mark for a reloaded one.
    public init(floor: UInt64 = 0, span: UInt64 = defaultSpan, capacity: Int = defaultCapacity) {
        precondition(capacity > 0, "a replay window must remember at least one nonce")
        self.span = span
        self.capacity = capacity
        self.highest = floor
        self.floor = floor
    }

    /// How many nonces are remembered now (never more than `capacity`).
    public var count: Int { seen.count }

    /// Checks a 12-byte client nonce and, when it is new, records it.
    public mutating func admit(_ nonce: [UInt8]) -> Verdict {
        let entry = Self.entry(nonce)
        if entry.timestamp <= floor { return .tooOld }
        var position = seen.count
        if let last = seen.last, !(last < entry) {
            position = firstIndex(notBelow: entry)
            if position < seen.count && seen[position] == entry { return .duplicate }
        }
        seen.insert(entry, at: position)
        if entry.timestamp > highest {
            highest = entry.timestamp
            if highest > span { raiseFloor(to: highest - span - 1) }
        }
        while seen.count > capacity {
            raiseFloor(to: seen.first!.timestamp)
        }
        return .accepted
    }

    /// For a session silent longer than the span: forgets the remembered
    /// nonces and raises the floor to the highest timestamp. Every nonce it
    /// remembered is then refused as too old, so no replay gets through; what
    /// is lost is only a packet that took more than the span to arrive.
    public mutating func compact() {
        raiseFloor(to: highest)
        seen = Deque()
    }

    private mutating func raiseFloor(to value: UInt64) {
        guard value > floor else { return }
        floor = value
        while let oldest = seen.first, oldest.timestamp <= floor { seen.removeFirst() }
    }

    /// The position of the first remembered nonce not below `entry`.
    private func firstIndex(notBelow entry: Entry) -> Int {
        var low = 0
        var high = seen.count
        while low < high {
            let middle = (low + high) / 2
            if seen[middle] < entry { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private static func entry(_ nonce: [UInt8]) -> Entry {
        var random: UInt32 = 0
        for i in 8..<min(12, nonce.count) { random = random << 8 | UInt32(nonce[i]) }
        return Entry(timestamp: Nonce.timestamp(nonce), random: random)
    }
}
