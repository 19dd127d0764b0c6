import Common
import Foundation

extension Operations {
    /// LOGIN (PROTOCOL.md §5.3). `verifiedHash` is the stored password hash
    /// that the given password was checked against before the transaction
    /// (hashing is too slow to run inside the single writer); nil when no
    /// password was checked.
    func login(_ tx: any StoreTransaction, email: String, password: String?, verifiedHash: String?) throws -> Outcome {
        guard TextRules.isValidEmail(email) else { return .error(ProtocolText.invalidEmail) }
        let user: UserRow
        if let existing = try tx.user(email: email) {
            user = existing
        } else {
            user = try tx.insertUser(
                userId: SecureRandom.identifier(), email: email, name: TextRules.defaultName(forEmail: email), now: now)
        }
        if let stored = user.passwordHash, !stored.isEmpty {
            guard let password, !password.isEmpty else {
                return .respond { response in
                    var please = IPCPleaseLogin()
                    please.email = email
                    response.pleaseLogin = please
                }
            }
            guard verifiedHash == stored, !password.isEmpty else {
                return .respond { $0.unauthorised = IPCUnauthorised() }
            }
        }
        try tx.setSessionUser(id: sessionId, user: user.rowId, now: now)
        try tx.touchUser(rowId: user.rowId, now: now)
        let info = try userInfo(tx, user)
        return .respond { $0.welcome = info }
    }

    /// LOGOUT (§5.4): this session only.
    func logout(_ tx: any StoreTransaction) throws -> Outcome {
        guard try caller(tx).user != nil else { return .error(ProtocolText.notLoggedIn) }
        try tx.setSessionUser(id: sessionId, user: nil, now: now)
        return .respond { response in
            var status = IPCStatusReply()
            status.sessionID = sessionId
            status.loggedOut = true
            response.status = status
        }
    }

    /// STATUS (§5.5).
    func status(_ tx: any StoreTransaction) throws -> Outcome {
        let (session, user) = try caller(tx)
        guard session != nil else { return .error(ProtocolText.invalidSession) }
        let info = try user.map { try userInfo(tx, $0) }
        return .respond { response in
            var status = IPCStatusReply()
            status.sessionID = sessionId
            if let info { status.user = info }
            response.status = status
        }
    }

    /// MERGE_SESSION (§5.6): the old session's key, proven by its digest,
    /// logs this session in as the old session's user.
    func mergeSession(_ tx: any StoreTransaction, oldSessionId: String, oldKeyDigest: [UInt8]) throws -> Outcome {
        let failed = Outcome.respond { $0.mergeFailed = IPCMergeFailed() }
        guard !oldSessionId.isEmpty, oldKeyDigest.count == 32, let old = try tx.session(id: oldSessionId),
            old.keyDigest.count == 32, constantTimeEqual(old.keyDigest, oldKeyDigest),
            let userRow = old.userRowId, let user = try tx.user(rowId: userRow)
        else { return failed }
        try tx.setSessionUser(id: sessionId, user: user.rowId, now: now)
        try tx.touchUser(rowId: user.rowId, now: now)
        let info = try userInfo(tx, user)
        return .respond { $0.welcome = info }
    }

    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
