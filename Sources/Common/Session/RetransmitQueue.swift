import HeapModule

/// Reliable delivery of broadcast copies (PROTOCOL.md §6.2): each copy is
/// sent, re-sent every `interval` until its recipient acknowledges it, and
/// dropped after `transmissions` sends in all.
///
/// A pure state machine: it takes events and the current time (monotonic
/// nanoseconds) and returns what to do; the caller owns the socket and the
/// timer. Not thread-safe.
public struct RetransmitQueue<Session: Hashable & Sendable, Payload: Sendable>: Sendable {
    /// A copy waiting for its acknowledgement.
    public struct Copy: Sendable {
        public var session: Session
        public var msgId: String
        public var payload: Payload
        /// How many times it has been sent.
        public var transmissions: Int
        fileprivate var due: UInt64
    }

    /// What the caller must do now.
    public enum Action: Sendable {
        /// Send the copy again (with a fresh nonce, to the session's current address).
        case resend(Copy)
        /// The copy used its transmissions without an acknowledgement.
        case expired(Copy)
    }

    private struct Deadline: Comparable {
        var due: UInt64
        var msgId: String
        static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.due < rhs.due }
    }

    public let interval: UInt64
    public let transmissions: Int
    /// Unacknowledged copies kept per session; a new copy beyond this
    /// replaces the session's oldest one, so a recipient that never
    /// acknowledges costs bounded memory.
    public let perSessionLimit: Int

    private var copies: [String: Copy] = [:]
    private var bySession: [Session: [String]] = [:]
    private var deadlines = Heap<Deadline>()

    public init(intervalNanoseconds: UInt64, transmissions: Int, perSessionLimit: Int = 1024) {
        precondition(transmissions >= 1 && perSessionLimit >= 1)
        self.interval = intervalNanoseconds
        self.transmissions = transmissions
        self.perSessionLimit = perSessionLimit
    }

    /// Copies waiting for an acknowledgement.
    public var count: Int { copies.count }

    /// Unacknowledged copies of one session.
    public func pending(for session: Session) -> Int { bySession[session]?.count ?? 0 }

    /// Records a copy that the caller has just sent for the first time.
    /// Returns the copy it displaced when the session was at its limit.
    @discardableResult
    public mutating func sent(session: Session, msgId: String, payload: Payload, now: UInt64) -> Copy? {
        var displaced: Copy?
        if pending(for: session) >= perSessionLimit, let oldest = bySession[session]?.first {
            displaced = remove(msgId: oldest)
        }
        guard transmissions > 1 else { return displaced }
        let copy = Copy(session: session, msgId: msgId, payload: payload, transmissions: 1, due: now &+ interval)
        copies[msgId] = copy
        bySession[session, default: []].append(msgId)
        deadlines.insert(Deadline(due: copy.due, msgId: msgId))
        return displaced
    }

    /// An `ACK` from `session` for `msgId`. Returns whether a copy stopped
    /// being retransmitted; an acknowledgement from another session is ignored.
    @discardableResult
    public mutating func acknowledge(session: Session, msgId: String) -> Bool {
        guard let copy = copies[msgId], copy.session == session else { return false }
        remove(msgId: msgId)
        return true
    }

    /// Forgets every copy for `session` (it expired or was dropped).
    public mutating func removeAll(for session: Session) {
        for msgId in bySession[session] ?? [] { copies[msgId] = nil }
        bySession[session] = nil
    }

    /// When the next copy is due, if any.
    public mutating func nextDeadline() -> UInt64? {
        while let top = deadlines.min {
            if let copy = copies[top.msgId], copy.due == top.due { return top.due }
            deadlines.removeMin()
        }
        return nil
    }

    /// The copies due at `now`: each is either re-sent (its count and next
    /// due time updated here) or expired and forgotten.
    public mutating func due(now: UInt64) -> [Action] {
        var actions: [Action] = []
        while let top = deadlines.min, top.due <= now {
            deadlines.removeMin()
            guard var copy = copies[top.msgId], copy.due == top.due else { continue }
            if copy.transmissions >= transmissions {
                remove(msgId: copy.msgId)
                actions.append(.expired(copy))
                continue
            }
            copy.transmissions += 1
            // The last transmission still waits one interval for its ACK, so
            // the copy is forgotten an interval after it, as in the original.
            copy.due = now &+ interval
            copies[copy.msgId] = copy
            deadlines.insert(Deadline(due: copy.due, msgId: copy.msgId))
            actions.append(.resend(copy))
        }
        return actions
    }

    @discardableResult
    private mutating func remove(msgId: String) -> Copy? {
        guard let copy = copies.removeValue(forKey: msgId) else { return nil }
        if var ids = bySession[copy.session] {
            ids.removeAll { $0 == msgId }
            bySession[copy.session] = ids.isEmpty ? nil : ids
        }
        return copy
    }
}
