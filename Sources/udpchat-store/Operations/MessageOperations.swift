import ChatWire
import IPCMessages

extension Operations {
    /// MESSAGE (§5.11): stored, then broadcast to every member, the sender
    /// included, once the transaction commits.
    func postMessage(_ tx: any StoreTransaction, roomId: String, content: String) throws -> Outcome {
        let user = try requireUser(tx)
        guard !roomId.isEmpty, !content.isEmpty else { return .error(ProtocolText.roomIdAndContentRequired) }
        guard let (room, isMember) = try tx.room(roomId: roomId, member: user.rowId) else { return .error(ProtocolText.roomNotFound) }
        guard isMember else { return .error(ProtocolText.joinBeforeSending) }
        let messageId = try tx.insertMessage(room: room.rowId, user: user.rowId, content: content, isAnnouncement: false, now: now)
        try tx.touchRoom(room.rowId, now: now)
        var sent = IPCMessageSent()
        sent.messageID = messageId
        sent.roomID = room.roomId
        sent.content = content
        sent.timestamp = now
        var outcome = Outcome.respond {
            $0.messageSent = sent
            $0.sessionUserID = user.userId  // known: no second read for it
        }
        outcome.events = [try messageEvent(tx, room, messageId, by: user, content)]
        return outcome
    }

    /// The MESSAGE broadcast of a stored message: one a member posted, or an AI reply.
    func messageEvent(_ tx: any StoreTransaction, _ room: RoomRow, _ messageId: Int64, by user: UserRow, _ content: String) throws
        -> IPCEvent
    {
        try roomEvent(tx, room) { event in
            var message = IPCMessageEvent()
            message.roomID = room.roomId
            message.messageID = messageId
            message.userID = user.userId
            message.name = user.name
            message.content = content
            message.timestamp = now
            event.message = message
        }
    }

    /// LIST_MESSAGES (§5.13): the newest messages, oldest first, in commit order.
    func listMessages(_ tx: any StoreTransaction, roomId: String?, limit: Int) throws -> Outcome {
        let room = try readableRoom(tx, roomId)
        var history = IPCHistory()
        history.roomID = room.roomId
        history.items = try tx.history(room: room.rowId, limit: limit)
        return .respond { $0.history = history }
    }
}
