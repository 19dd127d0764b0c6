import DequeModule
import HeapModule

/// Reliable, ordered delivery of broadcast copies (PROTOCOL.md §6 and
/// ARCHITECTURE.md, "Order and exactly-once display").
///
/// Each copy is sent and re-sent until its recipient acknowledges it:
///
/// - **Adaptive timing** (the default): the first retry waits the session's
///   RFC 6298 RTO (measured from its ACKs, minimum 200 ms), each further one
///   twice as long (capped at 8 s), until a time budget runs out. A session
///   whose copy runs out of budget is marked unreachable: its copies are
///   dropped and it gets no broadcasts until it speaks again.
/// - **Fixed timing** (the original's): every `interval`, `transmissions`
///   sends in all, then the copy is dropped silently.
///
/// Copies of one ordered stream (a room's events) go to a session that
/// acknowledges one at a time: the next waits until the one before is
/// acknowledged or dropped, so a client that shows messages in arrival order
/// shows them in commit order. A session that has never sent an ACK is not
/// held back. At most `perSessionLimit` copies wait per session; beyond it
/// the oldest is dropped (the message stays in history).
///
/// A pure state machine: events with the current time (monotonic
/// nanoseconds) in, copies to send out. Not thread-safe.
public struct DeliveryQueue<Payload: Sendable>: Sendable {
    public enum Timing: Sendable, Equatable {
        case adaptive(budget: UInt64)
        case fixed(interval: UInt64, transmissions: Int)
    }

    /// One copy of a broadcast for one session.
    public struct Copy: Sendable {
        public var session: String
        public var msgId: String
        /// Copies of the same stream reach a session in order; nil: unordered.
        public var stream: String?
        public var payload: Payload
        /// How many times it has been sent.
        public var transmissions = 0
        public var firstSent: UInt64 = 0
        public var lastSent: UInt64 = 0
        fileprivate var due: UInt64 = 0
    }

    public enum Action: Sendable {
        /// Send this copy (first transmission or retransmission) to the
        /// session's current address, with a fresh nonce.
        case send(Copy)
        /// The session ran out of budget: `dropped` copies were discarded and
        /// it is unreachable until it speaks.
        case unreachable(session: String, dropped: Int)
        /// A copy was acknowledged `roundTrip` nanoseconds after its first
        /// transmission (for metrics; nothing to send).
        case acknowledged(roundTrip: UInt64)
    }

    private struct SessionState {
        var estimator = RTTEstimator()
        var inFlight: [String: Copy] = [:]
        var order: Deque<String> = []  // msg ids, oldest first, in flight or waiting
        var waiting: [String: Deque<Copy>] = [:]
        /// Per stream, the copy the others wait for.
        var heads: [String: String] = [:]
        var acknowledges = false
        var unreachable = false

        var count: Int { order.count }
    }

    private struct Deadline: Comparable {
        var due: UInt64
        var session: String
        var msgId: String
        static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.due < rhs.due }
    }

    public let timing: Timing
    public let perSessionLimit: Int
    private var sessions: [String: SessionState] = [:]
    private var deadlines = Heap<Deadline>()

    /// Implementation constant: on a path that loses a third of its
    /// datagrams a room delivers about one message a second to a session
    /// that acknowledges, so a busy room can get hundreds ahead of a slow
    /// receiver; 1024 copies (a few hundred kilobytes) ride that out.
    public static var defaultPerSessionLimit: Int { 1024 }

    public init(timing: Timing, perSessionLimit: Int = defaultPerSessionLimit) {
        precondition(perSessionLimit >= 1)
        self.timing = timing
        self.perSessionLimit = perSessionLimit
    }

    /// Copies waiting for an acknowledgement or for their turn, in all.
    public var count: Int { sessions.values.reduce(0) { $0 + $1.count } }

    /// Copies waiting for one session.
    public func pending(for session: String) -> Int { sessions[session]?.count ?? 0 }

    /// Copies waiting for sessions that acknowledge and are reachable: those
    /// a graceful shutdown waits for.
    public var awaitedByAcknowledgers: Int {
        sessions.values.reduce(0) { $0 + ($1.acknowledges && !$1.unreachable ? $1.count : 0) }
    }

    /// Whether the session is marked unreachable.
    public func isUnreachable(_ session: String) -> Bool { sessions[session]?.unreachable ?? false }

    /// The session's retransmission timeout now.
    public func rto(for session: String) -> UInt64 { sessions[session]?.estimator.rto ?? RTTEstimator.initialRTO }

    /// A new copy for `session`; returns what to send now (nothing when the
    /// copy waits for its turn or the session is unreachable).
    public mutating func submit(session id: String, msgId: String, stream: String?, payload: Payload, now: UInt64) -> [Action] {
        var state = sessions[id] ?? SessionState()
        guard !state.unreachable else {
            sessions[id] = state
            return []
        }
        var actions: [Action] = []
        if state.count >= perSessionLimit, let oldest = state.order.first {
            actions += drop(oldest, from: &state, now: now)
        }
        let copy = Copy(session: id, msgId: msgId, stream: stream, payload: payload)
        state.order.append(msgId)
        if let stream, state.acknowledges, state.heads[stream] != nil {
            state.waiting[stream, default: []].append(copy)
        } else {
            actions.append(launch(copy, in: &state, now: now))
        }
        sessions[id] = state
        return actions
    }

    /// An ACK from `session`. Marks it as a session that acknowledges, takes
    /// an RTT sample from a copy sent once, and releases the stream's next copy.
    public mutating func acknowledge(session id: String, msgId: String, now: UInt64) -> [Action] {
        var state = sessions[id] ?? SessionState()
        state.acknowledges = true
        var actions: [Action] = []
        if let copy = state.inFlight.removeValue(forKey: msgId) {
            if copy.transmissions == 1 && now >= copy.lastSent { state.estimator.sample(now - copy.lastSent) }
            actions.append(.acknowledged(roundTrip: now &- copy.firstSent))
            state.order.removeAll { $0 == msgId }
            if let stream = copy.stream, state.heads[stream] == msgId { actions += release(stream, in: &state, now: now) }
        }
        sessions[id] = state
        return actions
    }

    /// The session proved itself again (an authenticated packet): it is reachable.
    public mutating func heard(from session: String) {
        sessions[session]?.unreachable = false
    }

    /// Forgets a session (it expired).
    public mutating func remove(session: String) { sessions[session] = nil }

    /// When the next retransmission is due, if any.
    public mutating func nextDeadline() -> UInt64? {
        while let top = deadlines.min {
            if let copy = sessions[top.session]?.inFlight[top.msgId], copy.due == top.due { return top.due }
            deadlines.removeMin()
        }
        return nil
    }

    /// Retransmissions and expiries due at `now`.
    public mutating func due(now: UInt64) -> [Action] {
        var actions: [Action] = []
        while let top = deadlines.min, top.due <= now {
            deadlines.removeMin()
            guard var state = sessions[top.session], var copy = state.inFlight[top.msgId], copy.due == top.due else { continue }
            switch timing {
            case .fixed(let interval, let transmissions):
                if copy.transmissions >= transmissions {
                    actions += drop(copy.msgId, from: &state, now: now)
                } else {
                    copy.transmissions += 1
                    copy.lastSent = now
                    copy.due = now &+ interval
                    state.inFlight[copy.msgId] = copy
                    deadlines.insert(Deadline(due: copy.due, session: copy.session, msgId: copy.msgId))
                    actions.append(.send(copy))
                }
            case .adaptive(let budget):
                if now &- copy.firstSent >= budget {
                    let dropped = state.count
                    state = SessionState(estimator: state.estimator, acknowledges: state.acknowledges, unreachable: true)
                    actions.append(.unreachable(session: top.session, dropped: dropped))
                } else {
                    copy.transmissions += 1
                    copy.lastSent = now
                    let wait = state.estimator.rto(afterTransmissions: copy.transmissions)
                    copy.due = min(now &+ wait, copy.firstSent &+ budget)
                    state.inFlight[copy.msgId] = copy
                    deadlines.insert(Deadline(due: copy.due, session: copy.session, msgId: copy.msgId))
                    actions.append(.send(copy))
                }
            }
            sessions[top.session] = state
        }
        return actions
    }

    private mutating func launch(_ copy: Copy, in state: inout SessionState, now: UInt64) -> Action {
        var copy = copy
        copy.transmissions = 1
        copy.firstSent = now
        copy.lastSent = now
        switch timing {
        case .fixed(let interval, let transmissions):
            // One transmission in all: nothing to wait for.
            copy.due = transmissions > 1 ? now &+ interval : now
        case .adaptive(let budget):
            copy.due = min(now &+ state.estimator.rto, now &+ budget)
        }
        state.inFlight[copy.msgId] = copy
        // Copies sent before the session first acknowledged hold nothing back.
        if let stream = copy.stream, state.acknowledges { state.heads[stream] = copy.msgId }
        deadlines.insert(Deadline(due: copy.due, session: copy.session, msgId: copy.msgId))
        return .send(copy)
    }

    /// Drops one copy (in flight or waiting) and lets its stream move on.
    private mutating func drop(_ msgId: String, from state: inout SessionState, now: UInt64) -> [Action] {
        state.order.removeAll { $0 == msgId }
        if let copy = state.inFlight.removeValue(forKey: msgId) {
            guard let stream = copy.stream, state.heads[stream] == msgId else { return [] }
            return release(stream, in: &state, now: now)
        }
        for (stream, var queue) in state.waiting {
            if let index = queue.firstIndex(where: { $0.msgId == msgId }) {
                queue.remove(at: index)
                state.waiting[stream] = queue.isEmpty ? nil : queue
                break
            }
        }
        return []
    }

    /// The stream's head is gone: send its next waiting copy.
    private mutating func release(_ stream: String, in state: inout SessionState, now: UInt64) -> [Action] {
        state.heads[stream] = nil
        guard var queue = state.waiting[stream], let next = queue.popFirst() else { return [] }
        state.waiting[stream] = queue.isEmpty ? nil : queue
        return [launch(next, in: &state, now: now)]
    }
}
