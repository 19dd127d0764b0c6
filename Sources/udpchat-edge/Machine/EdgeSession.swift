import ChatWire
import IPCMessages

/// One session as the edge holds it in memory: what it needs to open and
/// seal packets and to carry out requests. Where its broadcasts stand is
/// kept apart, in the ``DeliveryEngine``, under the same index.
struct EdgeSession {
    let id: String
    let cipher: SessionCipher
    /// The key sealed by udpchat-keys, sent with the first store request so
    /// the store can create the row (it never sees the key itself); emptied
    /// once the row exists.
    var wrappedKey: [UInt8]
    /// SHA-256 of the key: the store checks MERGE_SESSION against it.
    var keyDigest: [UInt8]
    /// Whether the store has the session's row.
    var persisted: Bool
    var state: State
    /// Where its last authenticated packet came from (until one arrives,
    /// where the handshake or the restoring packet came from, which nothing
    /// is sent to but their direct replies; or, for a session loaded at
    /// start, the address it last used).
    var address: PeerAddress
    /// Monotonic time of the last authenticated packet (or the handshake).
    var lastSeen: UInt64
    /// Wall-clock seconds of the same, for the store's expiry.
    var lastSeenWall: Int64
    var replay: SessionReplay
    /// Replies to the latest requests, for clients that send a request again.
    var replies = RecentReplies()
    /// The logged-in user's public id, as the store last reported it.
    var userId: String?
    /// Activity (liveness, address) not yet reported to the store.
    var dirty = false
    /// Another edge heard the session last while a request of it was under
    /// way here: it leaves at the next sweep unless it speaks here again.
    var movedAway = false
    /// Store requests wait here and go one at a time, so a client that sends
    /// JOIN_ROOM then MESSAGE without waiting sees them applied in order.
    var queue: [StoreWork] = []
    var busy = false

    init(
        id: String, cipher: SessionCipher, wrappedKey: [UInt8], keyDigest: [UInt8], persisted: Bool, state: State,
        address: PeerAddress, lastSeen: UInt64, lastSeenWall: Int64, replay: SessionReplay, userId: String?
    ) {
        self.id = id
        self.cipher = cipher
        self.wrappedKey = persisted ? [] : wrappedKey
        self.keyDigest = persisted ? [] : keyDigest
        self.persisted = persisted
        self.state = state
        self.address = address
        self.lastSeen = lastSeen
        self.lastSeenWall = lastSeenWall
        self.replay = replay
        self.userId = userId
    }
}

/// A session's replay windows, one for requests and one for ACKs. A client
/// under a heavy broadcast acknowledges hundreds of copies a second: in a
/// single window those would move the floor past a request whose first
/// datagram was lost, and its retry a second later would be refused as a
/// replay though it was never carried out. A late or repeated ACK is
/// dropped without a reply (an ACK never has one).
struct SessionReplay {
    var requests: ReplayWindow
    var acknowledgements: ReplayWindow

    /// Implementation constant: ACKs remembered (a late ACK that is refused
    /// costs one retransmission of its copy, nothing more).
    static let acknowledgementCapacity = 128

    init(floor: UInt64 = 0) {
        requests = ReplayWindow(floor: floor)
        acknowledgements = ReplayWindow(floor: floor, capacity: Self.acknowledgementCapacity)
    }

    /// The high-water mark kept in the store: a restored session refuses
    /// every nonce at or below it.
    var highest: UInt64 { max(requests.highest, acknowledgements.highest) }
    var count: Int { requests.count + acknowledgements.count }

    mutating func compact() {
        requests.compact()
        acknowledgements.compact()
    }
}

extension EdgeSession {
    enum State: Equatable {
        /// Made by SESSION_INIT; no packet has passed its AES-GCM tag yet.
        /// It has no row and receives no broadcasts, so spoofed handshakes
        /// leave nothing behind and cannot aim traffic at anyone.
        case handshake
        /// Loaded from the store without an address it can be reached at;
        /// waiting for its first packet to verify.
        case restored
        /// A packet passed its tag (on this edge, or on the one before it,
        /// whose address for it was loaded from the store).
        case active
    }
}

/// A store request on behalf of a session, and where its answer goes.
struct StoreWork: Sendable {
    var op: IPCStoreRequest.OneOf_Op
    /// nil when nothing is sent back (creating the row only).
    var replyTo: PeerAddress?
    /// The request's nonce, to remember its reply by.
    var nonce: [UInt8]? = nil
    /// Times the store was asked and gave no answer.
    var unanswered = 0
}

/// A `SECURE_MSG` as the edge works with it: the session it names, and its
/// nonce and sealed payload decoded from hex (nil where the hex is not valid,
/// which the open step answers).
struct SecureDatagram: Sendable {
    var sessionId: String
    var nonce: [UInt8]?
    var sealed: [UInt8]?

    init(sessionId: String, nonce: [UInt8]?, sealed: [UInt8]?) {
        self.sessionId = sessionId
        self.nonce = nonce
        self.sealed = sealed
    }

    init(_ envelope: SecureEnvelope) {
        self.init(sessionId: envelope.sessionId, nonce: Hex.decode(envelope.nonce), sealed: Hex.decode(envelope.ciphertext))
    }

    /// The fields of a plain `SECURE_MSG` envelope read straight from the
    /// datagram (``HotPaths``); nil when it needs the full parser.
    init?(fastFrom bytes: [UInt8]) {
        guard
            let decoded = bytes.withUnsafeBytes({ raw -> SecureDatagram? in
                guard let fields = HotPaths.secureEnvelope(raw) else { return nil }
                func hex(_ range: Range<Int>) -> [UInt8]? {
                    UnsafeRawBufferPointer(rebasing: raw[range]).withMemoryRebound(to: UInt8.self) { Hex.decode(utf8: $0) }
                }
                return SecureDatagram(
                    sessionId: String(decoding: UnsafeRawBufferPointer(rebasing: raw[fields.sessionId]), as: UTF8.self),
                    nonce: hex(fields.nonce), sealed: hex(fields.ciphertext))
            })
        else { return nil }
        self = decoded
    }
}

/// A datagram as far as replies to it go: where it came from and how big it
/// was (the budget of an unauthenticated reply).
struct Request: Sendable {
    var address: PeerAddress
    var size: Int
}
