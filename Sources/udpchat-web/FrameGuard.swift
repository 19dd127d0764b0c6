import ChatWire

/// What one WebSocket may send, decided frame by frame before anything
/// reaches the edge: each frame is one datagram, so it must fit in one
/// (`BUFFER_SIZE`, what the edge reads), be a JSON object (every packet of
/// the protocol is), and come at no more than `rate` a second (twice that
/// at once). A frame that breaks a rule closes the WebSocket with a code
/// and a reason the client can read; nothing of it is relayed. Pure; one
/// per connection, not thread-safe.
struct FrameGuard: Sendable {
    /// Why a WebSocket is closed: its close code and reason (at most 123
    /// bytes of UTF-8, the room a close frame has).
    struct Refusal: Error, Equatable, Sendable {
        var code: UInt16
        var reason: String
        /// The `reason` label of the close counter.
        var metric: String
    }

    let maxBytes: Int
    let rate: Double
    let burst: Double
    private var bucket: TokenBucket

    init(maxBytes: Int, rate: Int, now: UInt64) {
        precondition(maxBytes > 0 && rate > 0)
        self.maxBytes = maxBytes
        self.rate = Double(rate)
        burst = Double(rate) * 2
        bucket = TokenBucket(full: burst, at: now)
    }

    /// Checks one frame received at `now` (monotonic nanoseconds).
    mutating func admit(_ frame: [UInt8], now: UInt64) throws(Refusal) {
        guard bucket.take(rate: rate, burst: burst, now: now) else { throw Self.flood(rate: Int(rate)) }
        guard frame.count <= maxBytes else { throw Self.oversize(limit: maxBytes) }
        guard case .object = try? JSONParser.parse(frame) else { throw Self.notJSON }
    }

    static func flood(rate: Int) -> Refusal {
        Refusal(code: 1008, reason: "more than \(rate) frames a second", metric: "flood")
    }

    static func oversize(limit: Int) -> Refusal {
        Refusal(code: 1009, reason: "frame over \(limit) bytes, the largest datagram", metric: "oversize")
    }

    static let notJSON = Refusal(code: 1007, reason: "each frame must be one JSON object", metric: "not_json")
}
