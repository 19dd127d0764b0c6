/// Values of the generated messages made in one expression, for the
/// messages built in many places.
extension IPCRoomCursor {
    /// A session's position in a room: the last sequence number it has.
    public init(roomId: String, seq: UInt64) {
        self.init()
        roomID = roomId
        self.seq = seq
    }
}
