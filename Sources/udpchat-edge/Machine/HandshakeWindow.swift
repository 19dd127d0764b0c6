import ChatWire
import IPCMessages

/// Handshakes on their way to udpchat-keys. At most ``limit`` requests of
/// them are unanswered at once (unless keys takes one handshake a request,
/// below); the handshakes made meanwhile wait here and go together in the
/// next request, when one is answered.
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
/// A udpchat-keys older than the edge does not know requests of several
/// handshakes (`new_sessions`) and refuses them as invalid; the window then
/// sends those handshakes again, and every one after them, alone and at
/// once, as such an edge did (``refusedTogether(_:now:)``), and tries a
/// request of several again after ``retryTogether``, when keys may have
/// been upgraded.
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

    /// Implementation constant: how long handshakes go alone after keys
    /// refused several together, before it is asked again.
    static let retryTogether: UInt64 = 60_000_000_000

    typealias Handshake = (key: [UInt8], call: KeysCall)
    /// A request to send, and the handshakes it carries.
    typealias Sending = (request: IPCKeysRequest, handshakes: [Handshake])

    /// Until this monotonic time handshakes go alone, as many at once as
    /// come (keys refused several together).
    private(set) var aloneUntil: UInt64 = 0

    private(set) var unanswered = 0
    /// Oldest first, each with the monotonic time it began to wait.
    private(set) var waiting: [(handshake: Handshake, since: UInt64)] = []

    /// Adds `handshakes`, made at the monotonic time `now`; returns the requests to send now.
    mutating func add(_ handshakes: [Handshake], now: UInt64) -> [Sending] {
        waiting += handshakes.map { ($0, now) }
        return release(now: now)
    }

    /// A request sent earlier was answered (or failed for a reason of its
    /// own); returns the requests to send now.
    mutating func answered(now: UInt64) -> [Sending] {
        requestEnded()
        return release(now: now)
    }

    /// Keys refused the request of several `handshakes` as one it does not
    /// take: they go again, first, each alone, and so do the next ones
    /// until ``retryTogether`` has passed. Returns the requests to send now.
    mutating func refusedTogether(_ handshakes: [Handshake], now: UInt64) -> [Sending] {
        requestEnded()
        aloneUntil = now &+ Self.retryTogether
        waiting.insert(contentsOf: handshakes.map { ($0, now) }, at: 0)
        return release(now: now)
    }

    /// Whether `answer`, to a request of several handshakes, refuses the
    /// request itself (a keys that does not know `new_sessions`), not the
    /// handshakes in it.
    static func refusesTogether(_ answer: Result<IPCKeysResponse, RPCError>) -> Bool {
        guard case .success(let response) = answer, case .failure(let failure)? = response.result else { return false }
        return failure.code == ChatError.Code.invalidRequest.name
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

    private mutating func release(now: UInt64) -> [Sending] {
        let alone = now < aloneUntil
        var requests: [Sending] = []
        while (alone || unanswered < Self.limit) && !waiting.isEmpty {
            let part = waiting.prefix(alone ? 1 : Self.largestRequest)
            let handshakes = part.map(\.handshake)
            requests.append((EdgeOutput.handshakeRequest(handshakes), handshakes))
            waiting.removeFirst(part.count)
            unanswered += 1
        }
        return requests
    }
}
