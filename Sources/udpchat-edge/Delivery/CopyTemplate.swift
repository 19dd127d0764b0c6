import ChatWire

/// A broadcast's inner JSON, encoded once for all its copies. Copies differ
/// only in their `msg_id`, the last member of the object, so a copy is the
/// shared prefix with the id spliced in before the closing brace
/// (docs/protocol.md §6.2). The prefix is shared, never copied, between the
/// copies in flight.
struct CopyTemplate: Equatable {
    /// The packet's JSON without its closing brace.
    let prefix: [UInt8]
    /// The packet's `type`, for logs.
    let typeName: String

    init(_ packet: ServerPacket) {
        var bytes = packet.json().serialized()
        bytes.removeLast()  // the object's closing brace
        prefix = bytes
        typeName = packet.typeName
    }

    var size: Int { prefix.count }

    /// What a copy adds to the prefix: `,"msg_id":"<32 hex>"}`.
    static let copyOverhead = #","msg_id":""}"#.utf8.count + 2 * WireSpec.idBytes

    /// The inner JSON of the copy carrying `msgId` (16 bytes, sent as hex).
    func copy(msgId: MessageIdentifier) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(prefix.count + Self.copyOverhead)
        bytes.append(contentsOf: prefix)
        bytes.append(contentsOf: #","msg_id":""#.utf8)
        msgId.appendHex(to: &bytes)
        bytes.append(contentsOf: #""}"#.utf8)
        return bytes
    }
}
