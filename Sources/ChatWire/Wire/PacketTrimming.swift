extension ServerPacket {
    /// The packet cut down until its JSON satisfies `fits`, for the replies
    /// whose size grows with the data (docs/protocol.md §12 item 17): a history
    /// keeps its newest messages (still oldest first), a room list its most
    /// recently active rooms (most recent first), a member list its first
    /// members. Other packets, and lists that fit, come back unchanged;
    /// nil when not even an empty list fits.
    public func trimmed(toFit fits: ([UInt8]) -> Bool) -> ServerPacket? {
        if fits(json().serialized()) { return self }
        switch self {
        case .roomHistory(let roomId, let items):
            return Self.largest(count: items.count, fits: fits) { .roomHistory(roomId: roomId, items: Array(items.suffix($0))) }
        case .roomList(let rooms):
            let recent = rooms.enumerated().sorted { ($0.element.lastActiveAt, -$0.offset) > ($1.element.lastActiveAt, -$1.offset) }
                .map(\.element)
            return Self.largest(count: recent.count, fits: fits) { .roomList(Array(recent.prefix($0))) }
        case .roomMembers(let roomId, let members):
            return Self.largest(count: members.count, fits: fits) { .roomMembers(roomId: roomId, members: Array(members.prefix($0))) }
        default:
            return nil
        }
    }

    /// The packet with the most items that fits, by binary search on the count.
    private static func largest(count: Int, fits: ([UInt8]) -> Bool, make: (Int) -> ServerPacket) -> ServerPacket? {
        guard fits(make(0).json().serialized()) else { return nil }
        var low = 0, high = count  // make(low) fits; make(high) does not
        while high - low > 1 {
            let middle = (low + high) / 2
            if fits(make(middle).json().serialized()) { low = middle } else { high = middle }
        }
        return make(low)
    }
}

extension WireSpec {
    /// Whether inner JSON of `count` bytes fits in one datagram once sealed:
    /// the `SECURE_MSG` envelope's fixed fields plus the ciphertext and tag
    /// as hex (docs/protocol.md §3.5).
    public static func fitsSealed(_ count: Int) -> Bool {
        secureEnvelopeOverhead + 2 * (count + tagBytes) <= maxDatagram
    }

    /// The `SECURE_MSG` envelope around an empty ciphertext.
    public static let secureEnvelopeOverhead = Envelope.secure(
        SecureEnvelope(
            sessionId: String(repeating: "0", count: 2 * idBytes), nonce: String(repeating: "0", count: 2 * nonceBytes),
            ciphertext: "")
    ).encoded().count
}

extension MessageEvent {
    /// `content` cut (at a character, ending in "…") to the longest text
    /// with which this event's broadcast copy, `msg_id` included, still fits
    /// one sealed datagram; unchanged when it fits already. For text no
    /// client typed (an AI reply), whose length nothing else bounds.
    public func contentFittingOneCopy() -> String {
        let digits = String(repeating: "0", count: 2 * WireSpec.idBytes)
        func fits(_ text: String) -> Bool {
            var event = self
            event.content = text
            return WireSpec.fitsSealed(ServerPacket.message(event).json(msgId: digits).serialized().count)
        }
        if fits(content) { return content }
        let characters = Array(content)
        var low = 0, high = characters.count  // low characters (and "…") fit; all of them do not
        while high - low > 1 {
            let middle = (low + high) / 2
            if fits(String(characters[..<middle]) + "…") { low = middle } else { high = middle }
        }
        return String(characters[..<low]) + "…"
    }
}
