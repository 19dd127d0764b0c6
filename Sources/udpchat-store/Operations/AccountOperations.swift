import ChatWire
import Foundation
import IPCMessages

extension Operations {
    /// LOGIN (docs/protocol.md §5.3). Hashing is too slow for the single
    /// writer, so the password was checked before the transaction: `check`
    /// says against which stored hash, and brings the scrypt hash that
    /// replaces an imported MD5 one. With `requirePasswords`, an email alone
    /// neither creates an account nor logs in, and the answers do not tell
    /// which accounts exist.
    func login(_ tx: any StoreTransaction, email: String, password: String?, check: PasswordCheck, requirePasswords: Bool) throws
        -> Outcome
    {
        guard TextRules.isValidEmail(email) else { return .error(ProtocolText.invalidEmail) }
        let hasPassword = !(password ?? "").isEmpty
        let pleaseLogin = Outcome.respond { response in
            var please = IPCPleaseLogin()
            please.email = email
            response.pleaseLogin = please
        }
        let unauthorised = Outcome.respond { $0.unauthorised = IPCUnauthorised() }
        var found = try tx.user(email: email)
        if found == nil {
            if requirePasswords { return hasPassword ? unauthorised : pleaseLogin }
            found = try tx.insertUser(
                userId: SecureRandom.identifier(), email: email, name: TextRules.defaultName(forEmail: email), now: now)
        }
        let user = found!
        if let stored = user.passwordHash, !stored.isEmpty {
            guard hasPassword else { return pleaseLogin }
            guard case .matched(let checked, let upgrade) = check, checked == stored else { return unauthorised }
            if let upgrade { try tx.setPasswordHash(user: user.rowId, hash: upgrade) }
        } else if requirePasswords {
            return hasPassword ? unauthorised : pleaseLogin
        }
        return try welcome(tx, user)
    }

    /// LOGOUT (§5.4): this session only.
    func logout(_ tx: any StoreTransaction) throws -> Outcome {
        guard try caller(tx).user != nil else { return .error(ProtocolText.notLoggedIn) }
        try setUser(tx, nil)
        return .respond { response in
            var status = IPCStatusReply()
            status.sessionID = sessionId
            status.loggedOut = true
            response.status = status
            response.follows = IPCSessionFollows()
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
        return try welcome(tx, user)
    }

    /// Logs this session in as `user`: a WELCOME with the rooms it follows
    /// (LOGIN and MERGE_SESSION).
    private func welcome(_ tx: any StoreTransaction, _ user: UserRow) throws -> Outcome {
        try setUser(tx, user)
        try tx.touchUser(rowId: user.rowId, now: now)
        let info = try userInfo(tx, user)
        let follows = try follows(tx)
        return .respond { response in
            response.welcome = info
            response.follows = follows
        }
    }

    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}

/// The result of checking a LOGIN's password before its transaction.
enum PasswordCheck: Sendable, Equatable {
    /// No password was given, or the account has none.
    case notChecked
    /// The password matches this stored hash; `upgrade` replaces a legacy one.
    case matched(stored: String, upgrade: String?)
    case mismatched
}
