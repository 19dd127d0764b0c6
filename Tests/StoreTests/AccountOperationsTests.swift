import ChatWire
import Foundation
import IPCMessages
import Testing

@testable import udpchat_store

@Suite struct AccountTests {
    @Test(arguments: TestDatabase.available) func loginCreatesTheUserOnceAndReportsIt(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (first, user) = await store.loggedIn("alice@example.com")
        #expect(user.email == "alice@example.com" && user.name == "alice" && user.userID.count == 32 && !user.hasRoom)
        let (_, again) = await store.loggedIn("alice@example.com")
        #expect(again.userID == user.userID)
        let status = await store.call(first, .status(IPCStatus()))
        #expect(status.status.user.userID == user.userID && status.sessionUserID == user.userID)
    }

    @Test(arguments: TestDatabase.available) func invalidEmailIsRefusedAndChangesNothing(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let session = StoreHarness.Session()
        var login = IPCLogin()
        login.email = "not an email"
        let response = await store.call(session, .login(login), create: true)
        #expect(response.errorText == "Please provide a valid email address")
        let count = try await store.backend.read { tx in try tx.user(email: "not an email") == nil }
        #expect(count)
        // The session row itself exists: it was the session's first authenticated packet.
        let status = await store.call(session, .status(IPCStatus()))
        #expect(status.errorText == nil && !status.status.hasUser)
    }

    @Test(arguments: TestDatabase.available) func aSessionWithoutARowIsInvalid(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let response = await store.call(StoreHarness.Session(), .status(IPCStatus()))
        #expect(response.errorText == "Invalid session ID")
    }

    @Test(arguments: TestDatabase.available) func logoutClearsOnlyThisSession(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (a, _) = await store.loggedIn("alice@example.com")
        let (b, _) = await store.loggedIn("alice@example.com")
        let out = await store.call(a, .logout(IPCLogout()))
        #expect(out.status.loggedOut && out.sessionUserID.isEmpty)
        #expect(await store.call(a, .logout(IPCLogout())).errorText == "You are not logged in.")
        #expect(await store.call(a, .status(IPCStatus())).status.hasUser == false)
        #expect(await store.call(b, .status(IPCStatus())).status.hasUser)
    }

    @Test(arguments: TestDatabase.available) func mergeSessionNeedsTheOldKeyAndALoggedInSession(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (old, user) = await store.loggedIn("alice@example.com")
        let fresh = StoreHarness.Session()
        var merge = IPCMergeSession()
        merge.oldSessionID = old.id
        merge.oldKeyDigest = Data(repeating: 0, count: 32)
        #expect(await store.call(fresh, .mergeSession(merge), create: true).mergeFailed == IPCMergeFailed())
        merge.oldKeyDigest = old.digest
        let welcome = await store.call(fresh, .mergeSession(merge))
        #expect(welcome.welcome.userID == user.userID && welcome.sessionUserID == user.userID)
        // An anonymous old session cannot be merged.
        _ = await store.call(old, .logout(IPCLogout()))
        let another = StoreHarness.Session()
        #expect(await store.call(another, .mergeSession(merge), create: true).mergeFailed == IPCMergeFailed())
        merge.oldSessionID = "ffffffffffffffffffffffffffffffff"
        #expect(await store.call(another, .mergeSession(merge)).mergeFailed == IPCMergeFailed())
    }

    @Test(arguments: TestDatabase.available) func passwordsAreCheckedAgainstScryptHashes(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database)
        let (session, user) = await store.loggedIn("bob@example.com")
        let hash = try PasswordHash.make("correct horse")
        #expect(hash.hasPrefix("scrypt$16384$8$1$"))
        try await store.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", [hash, user.userID])
        var login = IPCLogin()
        login.email = "bob@example.com"
        #expect(await store.call(session, .login(login)).pleaseLogin.email == "bob@example.com")
        login.password = "wrong"
        #expect(await store.call(session, .login(login)).unauthorised == IPCUnauthorised())
        login.password = "correct horse"
        #expect(await store.call(session, .login(login)).welcome.userID == user.userID)
        #expect(!PasswordHash.verify("x", against: "md5-or-garbage"))
    }

    @Test(arguments: TestDatabase.available) func wrongPasswordsLockTheAccountForAWhile(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, loginFailures: 3)
        let session = try await store.loggedIn("bob@example.com", password: "right password")
        var login = StoreHarness.login("bob@example.com", "wrong")
        for _ in 0..<3 { #expect(await store.call(session, .login(login)).unauthorised == IPCUnauthorised()) }
        login.password = "right password"
        let held = await store.call(session, .login(login))
        #expect(held.errorText?.hasPrefix("Too many failed logins for this account") == true)
        // Refused before the operation ran: the answer does not say who the session's user is.
        #expect(held.userUnknown && held.sessionUserID.isEmpty)
        // A refusal by the operation itself does say: a second LOGOUT finds nobody logged in.
        let (dave, _) = await store.loggedIn("dave@example.com")
        _ = await store.call(dave, .logout(IPCLogout()))
        let again = await store.call(dave, .logout(IPCLogout()))
        #expect(again.errorText != nil && !again.userUnknown && again.sessionUserID.isEmpty)
        // Another account is not affected.
        let (other, _) = await store.loggedIn("carol@example.com")
        #expect(!other.id.isEmpty)
    }

    @Test(arguments: TestDatabase.available) func guessesFromOneAddressDoNotLockTheOwnerOutElsewhere(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, loginFailures: 3)
        let session = try await store.loggedIn("erin@example.com", password: "right password")
        var login = StoreHarness.login("erin@example.com", "wrong")
        let attacker = StoreHarness.Session()
        for _ in 0..<3 {
            #expect(await store.call(attacker, .login(login), create: true, from: "198.51.100.7:4000").unauthorised == IPCUnauthorised())
        }
        login.password = "right password"
        // The guesser's address waits, whichever port it uses; the owner's does not.
        #expect(await store.call(attacker, .login(login), from: "198.51.100.7:4001").errorText?.hasPrefix("Too many failed logins") == true)
        #expect(await store.call(session, .login(login), from: "203.0.113.9:5000").welcome.email == "erin@example.com")
        // IPv6 addresses count by their /64.
        login.password = "wrong"
        for port in 1...3 {
            _ = await store.call(attacker, .login(login), from: "[2001:db8:1:2::\(port)]:4000")
        }
        login.password = "right password"
        #expect(await store.call(attacker, .login(login), from: "[2001:db8:1:2:ffff::1]:4000").errorText?.hasPrefix("Too many failed logins") == true)
        #expect(await store.call(attacker, .login(login), from: "[2001:db8:1:3::1]:4000").welcome.email == "erin@example.com")
    }

    @Test(arguments: TestDatabase.available) func anUnknownAccountsPasswordIsHashedAsAKnownOnesIs(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, requirePasswords: true)
        let (session, _) = await store.loggedIn("frank@example.com")
        let hash = try PasswordHash.make("right password")
        try await store.backend.write { tx in try tx.setPasswordHash(user: 1, hash: hash) }
        var login = IPCLogin()
        login.password = "a guess"
        // A known account and an unknown one each cost one hash: the time
        // taken does not tell which accounts exist.
        for email in ["frank@example.com", "nobody-here@example.com"] {
            login.email = email
            let before = store.service.hashing.completed.value
            let response = await store.call(session, .login(login))
            #expect(response.welcome.email.isEmpty, "\(email): \(response)")
            #expect(store.service.hashing.completed.value == before + 1, "\(email)")
        }
    }

    @Test(arguments: TestDatabase.available) func withPasswordsRequiredAnEmailAloneDoesNothing(_ database: TestDatabase) async throws {
        let store = try StoreHarness(database, requirePasswords: true)
        let session = StoreHarness.Session()
        var login = IPCLogin()
        login.email = "new@example.com"
        // Unknown account, no password: asked for one (the same answer as for a known account).
        #expect(await store.call(session, .login(login), create: true).pleaseLogin.email == "new@example.com")
        login.password = "anything"
        #expect(await store.call(session, .login(login)).unauthorised == IPCUnauthorised())
        let created = try await store.backend.read { tx in try tx.user(email: "new@example.com") }
        #expect(created == nil)
        // With a password set, the account logs in.
        let hash = try PasswordHash.make("anything")
        try await store.backend.write { tx in
            let user = try tx.insertUser(userId: SecureRandom.identifier(), email: "new@example.com", name: "new", now: 0)
            try tx.setPasswordHash(user: user.rowId, hash: hash)
        }
        #expect(await store.call(session, .login(login)).welcome.email == "new@example.com")
    }
}
