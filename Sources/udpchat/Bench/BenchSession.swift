import ChatWire
import NIOCore

/// One simulated client of `udpchat bench`: its session, the request it
/// waits for, and what it received. Touched only on its worker's event
/// loop (hence unchecked).
final class BenchSession: @unchecked Sendable {
    let index: Int
    let socket: Int
    var id = ""
    var cipher: SessionCipher?
    /// Client nonces carry a strictly increasing nanosecond timestamp (docs/protocol.md §3.3).
    private var nonceClock: UInt64 = 0

    var handshakeTimer: Scheduled<Void>?
    var handshakeRetry: RepeatedTask?
    /// Kept for requests once its handshake is done (a handshake-only bench checks it and lets it go).
    var keep = true

    /// The request waiting for its answer: a response of one of `types`, an ERROR or a SERVER_ERROR.
    var pending: (types: Set<String>, done: (Result<ServerPacket, BenchError>) -> Void, timer: Scheduled<Void>?, retry: RepeatedTask?)?
    /// Requests sent so far (the number of the one pending).
    var requests = 0

    var roomId = ""
    var userId = ""
    /// Members of its room when traffic started (each receives every message).
    var roomMembers = 0

    // Traffic.
    var sending = false
    var stopped = false
    var sequence = 0
    var sent = 0
    var confirmed: [Int64] = []
    /// Answered with an ERROR (the rate limit): not committed.
    var refused = 0
    /// No answer within the timeout (or a SERVER_ERROR): the fate is unknown.
    var unanswered = 0
    var lastRefusal = ""

    // What arrived.
    var received: Set<Int64> = []
    var deliveries = 0
    var duplicates = 0
    /// Fan-out latency of each delivery of a message sent during the run, in microseconds.
    var latencies: [UInt32] = []
    var lastDelivery: UInt64 = 0
    var acks = 0

    init(index: Int, socket: Int) {
        self.index = index
        self.socket = socket
    }

    /// The datagram carrying `packet`.
    func seal(_ packet: ClientPacket, wallNanoseconds: UInt64, random: inout SecureRandom.Pool) -> [UInt8] {
        nonceClock = max(wallNanoseconds, nonceClock + 1)
        let nonce = Nonce.client(nanoseconds: nonceClock, random: random.take(4))
        return SecureEnvelope.datagram(sessionId: id, nonce: nonce, ciphertext: cipher!.seal(packet.json.serialized(), nonce: nonce))
    }
}

/// Why a bench step failed.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The text of a bench message: when it was sent (monotonic nanoseconds),
/// who sent it and its number, padded to the size asked for.
enum BenchText {
    static func make(sentAt: UInt64, client: Int, sequence: Int, size: Int) -> String {
        var text = "t=\(sentAt) c=\(client) n=\(sequence) "
        if text.utf8.count < size { text += String(repeating: "x", count: size - text.utf8.count) }
        return text
    }

    /// Whether `text` is message `sequence` of client `client`.
    static func isOwn(_ text: String, client: Int, sequence: Int) -> Bool {
        let fields = text.split(separator: " ", maxSplits: 3)
        return fields.count >= 3 && fields[1] == "c=\(client)" && fields[2] == "n=\(sequence)"
    }

    /// The send time in a bench message, or nil for any other text.
    static func sentAt(_ text: String) -> UInt64? {
        guard text.hasPrefix("t="), let space = text.firstIndex(of: " ") else { return nil }
        return UInt64(text[text.index(text.startIndex, offsetBy: 2)..<space])
    }
}
