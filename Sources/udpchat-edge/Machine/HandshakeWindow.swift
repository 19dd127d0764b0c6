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
/// Its memory is bounded by the machine's: a handshake waits here only
/// while it is counted among the machine's handshakes in flight.
struct HandshakeWindow {
    /// Implementation constant: requests of handshakes unanswered at once.
    static let limit = 4

    typealias Handshake = (key: [UInt8], call: KeysCall)

    private(set) var unanswered = 0
    private(set) var waiting: [Handshake] = []

    /// Adds `handshakes`; returns the requests to send now.
    mutating func add(_ handshakes: [Handshake]) -> [(request: IPCKeysRequest, calls: [KeysCall])] {
        waiting += handshakes
        return release()
    }

    /// A request sent earlier was answered, or failed; returns the requests to send now.
    mutating func answered() -> [(request: IPCKeysRequest, calls: [KeysCall])] {
        unanswered = max(0, unanswered - 1)
        return release()
    }

    /// A request sent earlier failed whole (keys did not answer in time, or
    /// is gone): the handshakes waiting would meet the same after it, past
    /// their clients' patience, so they are taken out to be answered with
    /// that failure now.
    mutating func failed() -> [Handshake] {
        unanswered = max(0, unanswered - 1)
        defer { waiting.removeAll() }
        return waiting
    }

    private mutating func release() -> [(request: IPCKeysRequest, calls: [KeysCall])] {
        var requests: [(request: IPCKeysRequest, calls: [KeysCall])] = []
        while unanswered < Self.limit && !waiting.isEmpty {
            let part = waiting.prefix(IPCKeysRequest.maximumNewSessions)
            requests.append(EdgeOutput.handshakeRequest(part))
            waiting.removeFirst(part.count)
            unanswered += 1
        }
        return requests
    }
}
