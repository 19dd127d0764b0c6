import Common
import DequeModule
import NIOCore

/// The edge's sessions: by id, by logged-in user (for fan-out), and the
/// order of pending handshakes (for their bound). Not thread-safe: it lives
/// on the edge's event loop.
struct SessionTable {
    private(set) var sessions: [String: EdgeSession] = [:]
    private var byUser: [String: Set<String>] = [:]
    private var pendingOrder = Deque<String>()
    private(set) var pendingCount = 0
    let maxPending: Int

    init(maxPending: Int) { self.maxPending = maxPending }

    var count: Int { sessions.count }

    subscript(id: String) -> EdgeSession? { sessions[id] }

    /// Adds a session fresh from a handshake. At the bound, the oldest
    /// pending handshake is forgotten first.
    mutating func addPending(_ session: EdgeSession) {
        while pendingCount >= maxPending, let oldest = pendingOrder.popFirst() {
            if let candidate = sessions[oldest], candidate.state == .handshake { remove(oldest) }
        }
        sessions[session.id] = session
        pendingOrder.append(session.id)
        pendingCount += 1
        // Ids of handshakes that authenticated or expired stay in the order
        // until here; compacting at twice the bound keeps it bounded.
        if pendingOrder.count > 2 * maxPending {
            pendingOrder = Deque(pendingOrder.filter { sessions[$0]?.state == .handshake })
        }
    }

    /// Adds a session restored from the store.
    mutating func addRestored(_ session: EdgeSession) {
        sessions[session.id] = session
        if let user = session.userId { byUser[user, default: []].insert(session.id) }
    }

    /// Changes a session in place, keeping the indexes right.
    /// The session is changed where it is stored: copying it out and back
    /// would copy its replay window's storage on every packet.
    mutating func update<T>(_ id: String, _ change: (inout EdgeSession) -> T) -> T? {
        guard let index = sessions.index(forKey: id) else { return nil }
        let wasPending = sessions.values[index].state == .handshake
        let oldUser = sessions.values[index].userId
        let result = change(&sessions.values[index])
        let session = sessions.values[index]
        if wasPending && session.state != .handshake { pendingCount -= 1 }
        if oldUser != session.userId {
            if let oldUser { removeIndex(user: oldUser, id: id) }
            if let newUser = session.userId { byUser[newUser, default: []].insert(id) }
        }
        return result
    }

    @discardableResult
    mutating func remove(_ id: String) -> EdgeSession? {
        guard let session = sessions.removeValue(forKey: id) else { return nil }
        if session.state == .handshake { pendingCount -= 1 }
        if let user = session.userId { removeIndex(user: user, id: id) }
        return session
    }

    /// Session ids of a user's sessions.
    func sessions(ofUser user: String) -> Set<String> { byUser[user] ?? [] }

    /// Ids of sessions silent since before `cutoff` (monotonic nanoseconds).
    func idle(since cutoff: UInt64) -> [String] {
        sessions.values.filter { $0.lastSeen < cutoff }.map(\.id)
    }

    /// Sessions with activity the store has not heard of, marked clean.
    mutating func takeDirty() -> [EdgeSession] {
        var result: [EdgeSession] = []
        for (id, session) in sessions where session.dirty && session.persisted {
            result.append(session)
            sessions[id]!.dirty = false
        }
        return result
    }

    private mutating func removeIndex(user: String, id: String) {
        byUser[user]?.remove(id)
        if byUser[user]?.isEmpty == true { byUser[user] = nil }
    }
}
