import ChatWire
import IPCMessages
import Metrics

/// A request that names its method, for RPC metrics.
public protocol RPCMethodNamed {
    var methodName: String { get }
}

extension IPCStoreRequest: RPCMethodNamed {
    public var methodName: String {
        switch op {
        case .ensure: "ensure"
        case .loadSession: "load_session"
        case .touchSessions: "touch_sessions"
        case .login: "login"
        case .logout: "logout"
        case .status: "status"
        case .mergeSession: "merge_session"
        case .listRooms: "list_rooms"
        case .createRoom: "create_room"
        case .joinRoom: "join_room"
        case .leaveRoom: "leave_room"
        case .postMessage: "post_message"
        case .listMessages: "list_messages"
        case .listMembers: "list_members"
        case .requestAi: "request_ai"
        case .ping: "ping"
        case .readRoomEvents: "read_room_events"
        case .loadSessions: "load_sessions"
        case nil: "none"
        }
    }
}

extension IPCKeysRequest: RPCMethodNamed {
    public var methodName: String {
        switch op {
        case .getIdentity: "get_identity"
        case .newSession: "new_session"
        case .newSessions: "new_sessions"
        case .unwrapSessionKey: "unwrap_session_key"
        case .unwrapSessionKeys: "unwrap_session_keys"
        case nil: "none"
        }
    }
}
