import Foundation

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

/// The requests the edge makes of udpchat-keys, each in one expression
/// (docs/architecture.md, "The contracts between processes").
extension IPCKeysRequest {
    /// A new session for a handshake: the client's RSA key as DER.
    public static func newSession(clientKey der: [UInt8]) -> IPCKeysRequest {
        var request = IPCKeysRequest()
        request.newSession.clientKeyDer = Data(der)
        return request
    }

    /// The most handshakes one `new_sessions` request may carry: what udpchat-keys
    /// takes and what an edge sends (it splits more into several requests).
    public static let maximumNewSessions = 512

    /// New sessions for several handshakes at once, in one request.
    public static func newSessions(clientKeys: [[UInt8]]) -> IPCKeysRequest {
        var request = IPCKeysRequest()
        request.newSessions.sessions = clientKeys.map { key in
            var session = IPCNewSession()
            session.clientKeyDer = Data(key)
            return session
        }
        return request
    }

    /// The key of one stored session, from its wrapped form.
    public static func unwrap(sessionId: String, wrappedKey: Data) -> IPCKeysRequest {
        var request = IPCKeysRequest()
        request.unwrapSessionKey = IPCUnwrapSessionKey(sessionId: sessionId, wrappedKey: wrappedKey)
        return request
    }

    /// The keys of many stored sessions at once.
    public static func unwrap(_ keys: [(sessionId: String, wrappedKey: Data)]) -> IPCKeysRequest {
        var request = IPCKeysRequest()
        request.unwrapSessionKeys.keys = keys.map(IPCUnwrapSessionKey.init)
        return request
    }

    /// The identity key's public half: an answer says the service is up.
    public static var identity: IPCKeysRequest {
        var request = IPCKeysRequest()
        request.getIdentity = IPCGetIdentity()
        return request
    }
}

extension IPCUnwrapSessionKey {
    public init(sessionId: String, wrappedKey: Data) {
        self.init()
        sessionID = sessionId
        self.wrappedKey = wrappedKey
    }
}

/// The requests the edge makes of udpchat-store that are not a client's.
extension IPCStoreRequest {
    /// One stored session, for a datagram that named a session not in memory.
    public static func loadSession(id: String) -> IPCStoreRequest {
        var request = IPCStoreRequest()
        request.loadSession.sessionID = id
        return request
    }

    /// A page of the sessions active since a time, after a session id.
    public static func loadSessions(activeSince: Int64, after: String, limit: UInt32, edge: String) -> IPCStoreRequest {
        var request = IPCStoreRequest()
        request.loadSessions.activeSince = activeSince
        request.loadSessions.afterSessionID = after
        request.loadSessions.limit = limit
        request.loadSessions.edge = edge
        return request
    }

    /// A room's events after a sequence number, a page at most.
    public static func readRoomEvents(roomId: String, after seq: UInt64, limit: UInt32) -> IPCStoreRequest {
        var request = IPCStoreRequest()
        request.readRoomEvents.rooms = [IPCRoomCursor(roomId: roomId, seq: seq)]
        request.readRoomEvents.limit = limit
        return request
    }

    /// Liveness, addresses and cursors of sessions.
    public static func touchSessions(_ activities: [IPCSessionActivity]) -> IPCStoreRequest {
        var request = IPCStoreRequest()
        request.touchSessions.sessions = activities
        return request
    }

    /// An answer says the store and its database are up.
    public static var ping: IPCStoreRequest {
        var request = IPCStoreRequest()
        request.ping = IPCPing()
        return request
    }
}
