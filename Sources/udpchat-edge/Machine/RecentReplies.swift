/// The replies to a session's last few requests, by request nonce, so that
/// a client that sends the same datagram again (its reply was lost) gets
/// the same reply again instead of an error, and the request is not
/// carried out twice (PROTOCOL.md §12, item 21). Bounded; not thread-safe.
struct RecentReplies {
    struct Entry {
        var nonce: [UInt8]
        /// The reply datagram, once sent; nil while the request is being
        /// handled or when it has no reply (an ACK).
        var reply: [UInt8]?
        var repeats = 0
        /// The store did not answer: a repeat is sent to it again.
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

    /// Notes a request whose repeat is handled again rather than answered
    /// from memory: a write the store gave no answer to (the store answers
    /// one it did carry out with the first answer), or a read (its reply is
    /// not kept). A read stays repeatable; a write is asked again once.
    mutating func sendAgainWhenRepeated(_ nonce: [UInt8], _ work: StoreWork) {
        if let index = entries.lastIndex(where: { $0.nonce == nonce }) { entries[index].retry = work }
    }

    enum Repeat {
        /// Send this datagram again.
        case reply([UInt8])
        /// Ask the store again (its first answer never came).
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
            // Until it is answered again (a read's answer is not kept either).
            entries[index].retry = nil
            return .retry(work)
        }
        guard let reply = entries[index].reply else { return .silent }
        guard entries[index].repeats < Self.maximumRepeats else { return .silent }
        entries[index].repeats += 1
        return .reply(reply)
    }
}
