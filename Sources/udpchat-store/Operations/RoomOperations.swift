import ChatWire
import IPCMessages

extension Operations {
    /// Room names longer than this are refused; the later original revision
    /// limited them to 255 characters by column type.
    static let maximumRoomNameLength = 255

    /// LIST_ROOMS (§5.7).
    func listRooms(_ tx: any StoreTransaction) throws -> Outcome {
        var list = IPCRoomList()
        list.rooms = try tx.publicRooms()
        return .respond { $0.roomList = list }
    }

    /// CREATE_ROOM (§5.8).
    /// `admit` applies the per-user limit (``WriteLimits``): the error text when over it.
    func createRoom(_ tx: any StoreTransaction, name: String, admit: (UserRow) -> String? = { _ in nil }) throws -> Outcome {
        let user = try requireUser(tx)
        guard !name.isEmpty else { return .error(ProtocolText.roomNameRequired) }
        guard name.count <= Self.maximumRoomNameLength else {
            return .error("Room name is too long (at most \(Self.maximumRoomNameLength) characters).")
        }
        guard try !tx.roomNameTaken(name) else { return .error(ProtocolText.roomNameTaken) }
        if let refusal = admit(user) { return .error(refusal) }
        let room = try tx.insertRoom(roomId: SecureRandom.identifier(), name: name, now: now)
        try tx.addMember(room: room.rowId, user: user.rowId, isAdmin: true, now: now)
        try tx.follow(room: room.rowId, user: user.rowId, after: 0)
        let follows = try follows(tx)
        var outcome = Outcome.respond { response in
            response.roomCreated = room.ref
            response.follows = follows
        }
        outcome.events = [try roomListEvent(tx)]
        return outcome
    }

    /// JOIN_ROOM (§5.9). Joining again answers `JOINED_ROOM` again and
    /// broadcasts nothing (the original answered nothing at all, §12 item 28).
    func joinRoom(_ tx: any StoreTransaction, roomId: String, admit: (UserRow) -> String? = { _ in nil }) throws -> Outcome {
        let user = try requireUser(tx)
        let room = try lookUpRoom(tx, roomId)
        let joined = Outcome.respond { $0.joinedRoom = room.ref }
        if try tx.isMember(room: room.rowId, user: user.rowId) { return joined }
        if let refusal = admit(user) { return .error(refusal) }
        try tx.addMember(room: room.rowId, user: user.rowId, isAdmin: false, now: now)
        let memberJoined = try roomEvent(tx, room) { event in
            var joinedEvent = IPCMemberJoined()
            // The original reports the user's global admin flag here (§5.9).
            joinedEvent.member = IPCMemberItem(user: user, isAdmin: user.isAdmin, joinedAt: now)
            event.memberJoined = joinedEvent
        }
        // Every session of the joiner follows the room from its MEMBER_JOINED on.
        try tx.follow(room: room.rowId, user: user.rowId, after: memberJoined.room.seq - 1)
        var outcome = joined
        outcome.response.follows = try follows(tx)
        outcome.events = [userEvent(user) { $0.roomJoined = room.ref }, memberJoined]
        return outcome
    }

    /// LEAVE_ROOM (§5.10). The last member's leaving closes the room; its
    /// messages are kept (the original deleted them, §12 item 26).
    func leaveRoom(_ tx: any StoreTransaction, roomId: String, admit: (UserRow) -> String? = { _ in nil }) throws -> Outcome {
        let user = try requireUser(tx)
        let room = try lookUpRoom(tx, roomId)
        guard try tx.isMember(room: room.rowId, user: user.rowId) else { return .error(ProtocolText.notAMember) }
        if let refusal = admit(user) { return .error(refusal) }
        try tx.removeMember(room: room.rowId, user: user.rowId)
        try tx.unfollow(room: room.rowId, user: user.rowId)
        let follows = try follows(tx)
        var outcome = Outcome.respond { response in
            response.leftRoom = room.ref
            response.follows = follows
        }
        outcome.events.append(userEvent(user) { $0.roomLeft = room.ref })
        if try tx.memberUserIds(room: room.rowId).isEmpty {
            try tx.closeRoom(room.rowId, now: now)
            outcome.events.append(try roomListEvent(tx))
        } else {
            outcome.events.append(
                try roomEvent(tx, room) { event in
                    var left = IPCMemberLeft()
                    left.memberID = user.userId
                    event.memberLeft = left
                })
        }
        return outcome
    }

    /// The room a LIST_MESSAGES or LIST_MEMBERS request is about: the given
    /// id, or the user's current room when the request named none (§12 item
    /// 31). Only members may read a room (§12 item 12).
    func readableRoom(_ tx: any StoreTransaction, _ roomId: String?) throws -> RoomRow {
        let user = try requireUser(tx)
        let room: RoomRow
        if let roomId {
            room = try lookUpRoom(tx, roomId)
        } else {
            guard let current = try tx.currentRoom(user: user.rowId) else { throw ChatError.refused(ProtocolText.roomIdRequired) }
            room = current
        }
        guard try tx.isMember(room: room.rowId, user: user.rowId) else { throw ChatError.refused(ProtocolText.notAMember) }
        return room
    }

    /// LIST_MEMBERS (§5.14).
    func listMembers(_ tx: any StoreTransaction, roomId: String?) throws -> Outcome {
        let room = try readableRoom(tx, roomId)
        var members = IPCMembers()
        members.roomID = room.roomId
        members.members = try tx.members(room: room.rowId)
        return .respond { $0.members = members }
    }
}
