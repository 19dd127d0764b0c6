import ChatWire
import Crypto
import Foundation
import IPCMessages

/// Translation between the wire's inner packets and the store's RPCs.
enum Translation {
    /// The store operation behind a client packet; nil for the packets the
    /// edge answers itself (ACK, HELLO).
    static func storeOperation(for packet: ClientPacket) -> IPCStoreRequest.OneOf_Op? {
        switch packet {
        case .ack, .hello: return nil
        case .aiMessage(let roomId, let content):
            var request = IPCRequestAI()
            request.roomID = roomId
            request.content = content
            return .requestAi(request)
        case .login(let email, let password):
            var login = IPCLogin()
            login.email = email
            if let password { login.password = password }
            return .login(login)
        case .logout: return .logout(IPCLogout())
        case .status: return .status(IPCStatus())
        case .mergeSession(let id, let key):
            var merge = IPCMergeSession()
            merge.oldSessionID = id
            // The store keeps only a digest of each key; an unreadable key
            // gets an empty digest, which matches nothing.
            if let bytes = Hex.decode(key), bytes.count == WireSpec.sessionKeyBytes {
                merge.oldKeyDigest = Data(SHA256.hash(data: bytes))
            }
            return .mergeSession(merge)
        case .listRooms: return .listRooms(IPCListRooms())
        case .createRoom(let name):
            var create = IPCCreateRoom()
            create.name = name
            return .createRoom(create)
        case .joinRoom(let roomId):
            var join = IPCJoinRoom()
            join.roomID = roomId
            return .joinRoom(join)
        case .leaveRoom(let roomId):
            var leave = IPCLeaveRoom()
            leave.roomID = roomId
            return .leaveRoom(leave)
        case .message(let roomId, let content):
            var post = IPCPostMessage()
            post.roomID = roomId
            post.content = content
            return .postMessage(post)
        case .listMessages(let roomId):
            var list = IPCListMessages()
            if let roomId { list.roomID = roomId }
            return .listMessages(list)
        case .listMembers(let roomId):
            var list = IPCListMembers()
            if let roomId { list.roomID = roomId }
            return .listMembers(list)
        }
    }

    /// Whether an operation changes the store anyway, so carrying the
    /// session's replay mark costs nothing extra.
    static func isWrite(_ op: IPCStoreRequest.OneOf_Op) -> Bool {
        switch op {
        case .login, .logout, .mergeSession, .createRoom, .joinRoom, .leaveRoom, .postMessage, .requestAi, .ensure: return true
        default: return false
        }
    }

    /// The packet that answers the client; nil when nothing is sent.
    static func reply(to response: IPCStoreResponse, sessionId: String) -> ServerPacket? {
        switch response.result {
        case .done?, .loadedSession?, .loadedSessions?, .roomEvents?, nil: return nil
        case .welcome(let info)?: return .welcome(UserInfo(info))
        case .pleaseLogin(let please)?:
            return .pleaseLogin(message: ProtocolText.pleaseTypePassword, email: please.email)
        case .unauthorised?: return .unauthorised(message: ProtocolText.incorrectPassword)
        case .status(let status)?:
            let user: StatusUser = status.loggedOut ? .null : (status.hasUser ? .user(UserInfo(status.user)) : .empty)
            return .status(sessionId: status.sessionID.isEmpty ? sessionId : status.sessionID, user: user)
        case .mergeFailed?: return .mergeSessionFailed
        case .roomList(let list)?: return .roomList(list.rooms.map(RoomSummary.init))
        case .roomCreated(let room)?: return .roomCreated(RoomRef(room))
        case .joinedRoom(let room)?: return .joinedRoom(RoomRef(room))
        case .leftRoom(let room)?: return .leftRoom(RoomRef(room))
        case .history(let history)?: return .roomHistory(roomId: history.roomID, items: history.items.map(HistoryItem.init))
        case .members(let members)?: return .roomMembers(roomId: members.roomID, members: members.members.map(MemberItem.init))
        case .messageSent(let sent)?:
            return .messageSent(messageId: sent.messageID, roomId: sent.roomID, content: sent.content, timestamp: sent.timestamp)
        case .error(let error)?: return .error(message: error.message)
        }
    }
}

extension UserInfo {
    init(_ info: IPCUserInfo) {
        self.init(email: info.email, name: info.name, userId: info.userID, room: info.hasRoom ? RoomRef(info.room) : nil)
    }
}

extension RoomRef {
    init(_ ref: IPCRoomRef) { self.init(roomId: ref.roomID, name: ref.name) }
}

extension RoomSummary {
    init(_ summary: IPCRoomSummary) {
        self.init(roomId: summary.roomID, name: summary.name, lastActiveAt: summary.lastActiveAt)
    }
}

extension HistoryItem {
    init(_ item: IPCHistoryItem) {
        self.init(messageId: item.messageID, userId: item.userID, name: item.name, content: item.content, timestamp: item.timestamp)
    }
}

extension MemberItem {
    init(_ item: IPCMemberItem) {
        self.init(userId: item.userID, name: item.name, isAdmin: item.isAdmin, joinedAt: item.joinedAt)
    }
}

extension MessageEvent {
    init(_ event: IPCMessageEvent) {
        self.init(
            roomId: event.roomID, messageId: event.messageID, userId: event.userID, name: event.name, content: event.content,
            timestamp: event.timestamp)
    }
}
