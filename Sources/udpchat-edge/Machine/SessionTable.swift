import ChatWire
import DequeModule

/// The edge's sessions in a slab: each has a small integer index that stays
/// the same while it lives (the delivery engine and the room logs refer to
/// sessions by it), found by id through one dictionary. Pending handshakes
/// are bounded, oldest forgotten first. It counts sessions by source
/// (``SourceAddress``) and those not logged in, for the limits on both.
/// Not thread-safe.
struct SessionTable {
    typealias Index = Int32

    private var slots: [EdgeSession?] = []
    /// The source each slot's session counts against.
    private var sources: [String] = []
    private var perSource: [String: Int] = [:]
    /// Sessions with no user logged in.
    private(set) var anonymousCount = 0
    private var free: [Index] = []
    private var byId: [String: Index] = [:]
    private var pendingOrder = Deque<Index>()
    private(set) var pendingCount = 0
    let maxPending: Int

    init(maxPending: Int) { self.maxPending = maxPending }

    var count: Int { byId.count }

    /// Sessions counted against `source`.
    func sessions(from source: String) -> Int { perSource[source] ?? 0 }

    /// The index of the session with this id.
    func index(of id: String) -> Index? { byId[id] }

    /// Read in place (a borrow, not a copy of the session and its replay window).
    subscript(index: Index) -> EdgeSession? {
        _read {
            if Int(index) < slots.count { yield slots[Int(index)] } else { yield nil }
        }
    }

    subscript(id id: String) -> EdgeSession? { byId[id].flatMap { self[$0] } }

    /// Every index in use.
    var indices: [Index] { Array(byId.values) }

    /// Adds a session fresh from a handshake. At the bound, the oldest
    /// pending handshake is forgotten first; returns its index if one was.
    @discardableResult
    mutating func addPending(_ session: EdgeSession, source: String) -> (added: Index, forgotten: [Index]) {
        var forgotten: [Index] = []
        while pendingCount >= maxPending, let oldest = pendingOrder.popFirst() {
            if let candidate = self[oldest], candidate.state == .handshake {
                remove(oldest)
                forgotten.append(oldest)
            }
        }
        let index = insert(session, source: source)
        pendingOrder.append(index)
        pendingCount += 1
        // Indexes of handshakes that authenticated or expired stay in the
        // order until here; compacting at twice the bound keeps it bounded.
        if pendingOrder.count > 2 * maxPending {
            pendingOrder = Deque(pendingOrder.filter { self[$0]?.state == .handshake })
        }
        return (index, forgotten)
    }

    /// Adds a session restored from the store.
    mutating func addRestored(_ session: EdgeSession, source: String) -> Index { insert(session, source: source) }

    /// Changes a session in place (never a copy of it: that would copy its
    /// replay window's storage on every packet), keeping the counts right.
    @discardableResult
    mutating func update<T>(_ index: Index, _ change: (inout EdgeSession) -> T) -> T? {
        guard Int(index) < slots.count, slots[Int(index)] != nil else { return nil }
        let wasPending = slots[Int(index)]!.state == .handshake
        let wasAnonymous = slots[Int(index)]!.userId == nil
        let result = change(&slots[Int(index)]!)
        if wasPending && slots[Int(index)]!.state != .handshake { pendingCount -= 1 }
        let isAnonymous = slots[Int(index)]!.userId == nil
        if wasAnonymous != isAnonymous { anonymousCount += isAnonymous ? 1 : -1 }
        return result
    }

    @discardableResult
    mutating func remove(_ index: Index) -> EdgeSession? {
        guard let session = self[index] else { return nil }
        slots[Int(index)] = nil
        byId[session.id] = nil
        free.append(index)
        if session.state == .handshake { pendingCount -= 1 }
        if session.userId == nil { anonymousCount -= 1 }
        let source = sources[Int(index)]
        if let left = perSource[source], left > 1 { perSource[source] = left - 1 } else { perSource[source] = nil }
        return session
    }

    /// Indexes of sessions silent since before `cutoff` (monotonic nanoseconds).
    func idle(since cutoff: UInt64) -> [Index] {
        byId.values.filter { slots[Int($0)]!.lastSeen < cutoff }
    }

    /// Sessions not logged in that have been silent since before `cutoff`.
    func anonymousIdle(since cutoff: UInt64) -> [Index] {
        byId.values.filter { slots[Int($0)]!.userId == nil && slots[Int($0)]!.lastSeen < cutoff }
    }

    private mutating func insert(_ session: EdgeSession, source: String) -> Index {
        precondition(byId[session.id] == nil, "a session id is added once")
        let index: Index
        if let reused = free.popLast() {
            index = reused
            slots[Int(index)] = session
            sources[Int(index)] = source
        } else {
            index = Index(slots.count)
            slots.append(session)
            sources.append(source)
        }
        byId[session.id] = index
        perSource[source, default: 0] += 1
        if session.userId == nil { anonymousCount += 1 }
        return index
    }
}
