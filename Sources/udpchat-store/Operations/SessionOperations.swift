import Common
import Foundation

extension Operations {
    /// Creates the session's row on its first authenticated packet
    /// (ARCHITECTURE.md, "Handshake"), and records its liveness and replay mark.
    func ensureSession(_ tx: any StoreTransaction, _ context: IPCSessionContext) throws {
        if !context.wrappedKey.isEmpty {
            try tx.insertSession(
                id: sessionId, wrappedKey: [UInt8](context.wrappedKey), keyDigest: [UInt8](context.keyDigest),
                replayMark: context.replayMark, now: now)
        }
        if context.replayMark > 0 {
            try tx.touchSession(id: sessionId, lastActiveAt: now, replayMark: context.replayMark)
        }
    }

    /// What a restarted edge needs to take a session over.
    static func loadSession(_ tx: any StoreTransaction, id: String) throws -> Outcome {
        var loaded = IPCLoadedSession()
        if let row = try tx.session(id: id) {
            loaded.found = true
            loaded.wrappedKey = .init(row.wrappedKey)
            loaded.replayMark = row.replayMark
            if let userRow = row.userRowId, let user = try tx.user(rowId: userRow) { loaded.userID = user.userId }
        }
        return .respond { response in
            response.sessionUserID = loaded.userID
            response.loadedSession = loaded
        }
    }

    /// Liveness and replay marks of many sessions, batched by the edge so
    /// that no datagram costs a write of its own.
    static func touchSessions(_ tx: any StoreTransaction, _ touch: IPCTouchSessions) throws -> Outcome {
        for activity in touch.sessions {
            try tx.touchSession(id: activity.sessionID, lastActiveAt: activity.lastActiveAt, replayMark: activity.replayMark)
        }
        return .respond { $0.done = IPCDone() }
    }
}
