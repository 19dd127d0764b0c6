/// The replies to a session's last few requests, by request nonce, so that
/// a client that sends the same datagram again (its reply was lost) gets
/// the same reply again instead of an error, and the request is not
/// carried out twice (docs/protocol.md §12, item 21). Bounded; not thread-safe.
struct RecentReplies {
    struct Entry {
        var nonce: [UInt8]
        /// The reply datagram, once sent; nil while the request is being
        /// handled or when it has no reply (an ACK).
        var reply: [UInt8]?
        var repeats = 0
        /// A read: its repeat is sent to the store again.
        var retry: StoreWork?
    }

    /// Implementation constants: a client retries its last request or two;
    /// each reply is repeated a few times at most.
    static let capacity = 8
    static let maximumRepeats = 16

    private(set) var entries: [Entry] = []

    var isEmpty: Bool { entries.isEmpty }

    /// Whether `nonce` is one of the recent requests.
    func remembers(_ nonce: [UInt8]) -> Bool { entries.contains { $0.nonce == nonce } }

    /// Bytes of reply datagrams kept.
    var keptBytes: Int { entries.reduce(0) { $0 + ($1.reply?.count ?? 0) } }

    /// Notes an accepted request.
    mutating func accepted(_ nonce: [UInt8]) {
        entries.append(Entry(nonce: nonce))
        if entries.count > Self.capacity { entries.removeFirst(entries.count - Self.capacity) }
    }

    /// Notes the reply sent for a request.
    mutating func replied(_ nonce: [UInt8], with datagram: [UInt8]) {
        if let index = entries.lastIndex(where: { $0.nonce == nonce }) {
            entries[index].reply = datagram
            entries[index].retry = nil
        }
    }

    /// Notes a read whose repeat is read again rather than answered from
    /// memory (its reply, which may fill a datagram, is not kept).
    mutating func sendAgainWhenRepeated(_ nonce: [UInt8], _ work: StoreWork) {
        if let index = entries.lastIndex(where: { $0.nonce == nonce }) { entries[index].retry = work }
    }

    enum Repeat {
        /// Send this datagram again.
        case reply([UInt8])
        /// Ask the store again (a read, whose answer is not kept).
        case retry(StoreWork)
        /// The request is known but has no reply (yet, or at all): stay silent.
        case silent
        /// Not a recent request.
        case unknown
    }

    /// What to do about a request seen before.
    mutating func repeatFor(_ nonce: [UInt8]) -> Repeat {
        guard let index = entries.lastIndex(where: { $0.nonce == nonce }) else { return .unknown }
        if let work = entries[index].retry {
            guard entries[index].repeats < Self.maximumRepeats else { return .silent }
            entries[index].repeats += 1
            // Set again when it is answered.
            entries[index].retry = nil
            return .retry(work)
        }
        guard let reply = entries[index].reply else { return .silent }
        guard entries[index].repeats < Self.maximumRepeats else { return .silent }
        entries[index].repeats += 1
        return .reply(reply)
    }
}
