import ChatWire
import Foundation
import IPCMessages

/// The time as the edge's machine sees it, passed in with every event so a
/// test can run the machine on virtual time.
struct EdgeTime {
    /// Monotonic nanoseconds: every timeout and rate.
    var monotonic: UInt64
    /// Wall-clock seconds since 1970: what the store records.
    var wall: Int64

    static func now() -> EdgeTime {
        EdgeTime(monotonic: MonotonicClock.now(), wall: Int64(Date().timeIntervalSince1970))
    }
}

/// A datagram to send.
struct OutboundDatagram {
    var bytes: [UInt8]
    var address: PeerAddress
}

/// What the machine asks the rim to do after an event: datagrams to send
/// and calls to make. Each call's answer comes back to the machine with
/// the call's context (``KeysCall``, ``StoreCall``).
struct EdgeOutput {
    var datagrams: [OutboundDatagram] = []
    var keysCalls: [(request: IPCKeysRequest, call: KeysCall)] = []
    var storeCalls: [(request: IPCStoreRequest, call: StoreCall)] = []
    /// Many sessions' memory was freed: give the allocator's free pages
    /// back to the system (``MemoryTrim``).
    var releaseFreeMemory = false

    var isEmpty: Bool { datagrams.isEmpty && keysCalls.isEmpty && storeCalls.isEmpty && !releaseFreeMemory }

    mutating func removeAll() {
        datagrams.removeAll(keepingCapacity: true)
        keysCalls.removeAll(keepingCapacity: true)
        storeCalls.removeAll(keepingCapacity: true)
        releaseFreeMemory = false
    }
}

extension EdgeOutput {
    /// The calls to udpchat-keys: the handshakes apart (their client keys,
    /// for ``HandshakeWindow`` to send together), each other call as its
    /// request.
    func keysRequests() -> (handshakes: [HandshakeWindow.Handshake], others: [(request: IPCKeysRequest, calls: [KeysCall])]) {
        var handshakes: [HandshakeWindow.Handshake] = []
        var others: [(request: IPCKeysRequest, calls: [KeysCall])] = []
        for (request, call) in keysCalls {
            if case .newSession = call, case .newSession(let new)? = request.op {
                handshakes.append(([UInt8](new.clientKeyDer), call))
            } else {
                others.append((request, [call]))
            }
        }
        return (handshakes, others)
    }

    /// One request for `handshakes` (at most ``IPCKeysRequest/maximumNewSessions``).
    static func handshakeRequest(_ handshakes: [HandshakeWindow.Handshake]) -> IPCKeysRequest {
        precondition(handshakes.count <= IPCKeysRequest.maximumNewSessions)
        if handshakes.count == 1, let one = handshakes.first { return .newSession(clientKey: one.key) }
        return .newSessions(clientKeys: handshakes.map(\.key))
    }

    /// The answer for each of `calls` out of the answer to their request.
    /// A failure of the whole request, or an answer that does not hold one
    /// result for each, is every call's answer.
    static func keysAnswers(_ result: Result<IPCKeysResponse, RPCError>, for calls: [KeysCall]) -> [Result<IPCKeysResponse, RPCError>] {
        guard calls.count > 1 else { return [result] }
        guard case .success(let response) = result, case .newSessions(let batch)? = response.result, batch.results.count == calls.count
        else { return Array(repeating: result, count: calls.count) }
        return batch.results.map { .success($0) }
    }
}

/// Why the machine called udpchat-keys.
enum KeysCall: Sendable {
    /// A new session for a handshake.
    case newSession(request: Request)
    /// The key of one session being restored for a datagram that named it.
    case unwrap(sessionId: String, loaded: IPCLoadedSession)
    /// The keys of a page of sessions loaded at start or on resynchronisation.
    /// Sessions of a page new to this edge; `last` is the page's last id, where the next page starts.
    case unwrapPage([IPCLoadedSession], resync: Bool, more: Bool, last: String)
}

/// Why the machine called udpchat-store.
enum StoreCall: Sendable {
    /// A datagram named a session not in memory.
    case restore(sessionId: String)
    /// A client's request.
    case request(session: SessionTable.Index, sessionId: String, work: StoreWork, carriedKey: Bool)
    /// Liveness, addresses and cursors.
    case report([SessionReport])
    /// A page of recently active sessions, after `after`.
    case loadPage(after: String, resync: Bool)
    /// A room's events after a position.
    case read(roomId: String, after: UInt64)
}

/// What one session's report to the store held, so a failed report can be sent again.
struct SessionReport: Sendable {
    var session: SessionTable.Index
    var sessionId: String
    var cursors: [(String, UInt64)]
}
