import IPCMessages

/// Handshakes on their way to udpchat-keys. At most ``limit`` requests of
/// them are unanswered at once; the handshakes made meanwhile wait here and
/// go together in the next request, when one is answered.
///
/// Under load this makes the requests as large as the load: the edge's
/// events come in singly (a handshake a datagram), and sent as they came
/// each would cost keys, the edge and ZeroMQ a wake-up of several threads
/// (docs/performance.md, "Handshakes end to end"). Unloaded, nothing
/// waits: a handshake goes at once while fewer than ``limit`` requests are
/// unanswered. Enough must be unanswered that keys' signing threads have
/// the next request's work while an answer travels back and the next
/// request comes: with two, they stood idle 6 % of the time.
///
/// A handshake waits no longer than the caller's deadline for keys
/// (``expired(waitingSince:)``), and not at all once a request has failed
/// for want of an answer (``failed()``): its client hears at the deadline,
/// as it would have without the window.
///
/// Its memory is bounded by the machine's: a handshake waits here only
/// while it is counted among the machine's handshakes in flight.
struct HandshakeWindow {
    /// Implementation constant: requests of handshakes unanswered at once.
    static let limit = 4
    /// Implementation constant: handshakes in one request. Keys takes a
    /// request whole or answers it `busy` whole, so a large one would be
    /// refused whole when several edges share a keys; 64 signatures are
    /// 8 ms of work on 2 cores, far more than an answer's travel.
    static let largestRequest = min(64, IPCKeysRequest.maximumNewSessions)

    typealias Handshake = (key: [UInt8], call: KeysCall)

    private(set) var unanswered = 0
    /// Oldest first, each with the monotonic time it began to wait.
    private(set) var waiting: [(handshake: Handshake, since: UInt64)] = []

    /// Adds `handshakes`, made at the monotonic time `now`; returns the requests to send now.
    mutating func add(_ handshakes: [Handshake], now: UInt64) -> [(request: IPCKeysRequest, calls: [KeysCall])] {
        waiting += handshakes.map { ($0, now) }
        return release()
    }

    /// A request sent earlier was answered (or failed for a reason of its
    /// own); returns the requests to send now.
    mutating func answered() -> [(request: IPCKeysRequest, calls: [KeysCall])] {
        requestEnded()
        return release()
    }

    /// A request sent earlier got no answer in time: the handshakes waiting
    /// would meet the same after it, past their clients' patience, so they
    /// are taken out to be answered with that failure now.
    mutating func failed() -> [Handshake] {
        requestEnded()
        defer { waiting.removeAll() }
        return waiting.map(\.handshake)
    }

    /// Takes out the handshakes that began to wait before `cutoff`: keys
    /// has not taken them within the caller's deadline.
    mutating func expired(waitingSince cutoff: UInt64) -> [Handshake] {
        let count = waiting.prefix { $0.since < cutoff }.count
        defer { waiting.removeFirst(count) }
        return waiting.prefix(count).map(\.handshake)
    }

    private mutating func requestEnded() {
        assert(unanswered > 0, "an answer to a request of handshakes that was not sent")
        unanswered = max(0, unanswered - 1)
    }

    private mutating func release() -> [(request: IPCKeysRequest, calls: [KeysCall])] {
        var requests: [(request: IPCKeysRequest, calls: [KeysCall])] = []
        while unanswered < Self.limit && !waiting.isEmpty {
            let part = waiting.prefix(Self.largestRequest)
            requests.append(EdgeOutput.handshakeRequest(part.map(\.handshake)[...]))
            waiting.removeFirst(part.count)
            unanswered += 1
        }
        return requests
    }
}
