import Common
import Crypto
import Foundation
import Logging
import Synchronization

@testable import udpchat_store

/// A store on a temporary SQLite file, with the events it published.
final class StoreHarness: Sendable {
    let directory: URL
    let backend: SQLiteBackend
    let service: StoreService
    private let published = EventLog()

    final class EventLog: Sendable {
        let events = Mutex<[IPCEvent]>([])
    }

    init(requirePasswords: Bool = false, loginFailures: Int = 5, writeLimits: WriteLimits = WriteLimits()) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("udpchat-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        backend = try SQLiteBackend(path: directory.appendingPathComponent("test.db").path)
        let published = self.published
        service = StoreService(
            backend: backend, sessionIdleSeconds: 600, writeLimits: writeLimits, requirePasswords: requirePasswords,
            loginFailuresPerAccount: loginFailures,
            logger: Logger(label: "test")
        ) { outcomes in
            published.events.withLock { $0.append(contentsOf: outcomes.flatMap(\.events)) }
        }
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Events published so far; clears the list.
    func takeEvents() -> [IPCEvent] {
        published.events.withLock { events in
            defer { events.removeAll() }
            return events
        }
    }

    /// A session as the edge makes it, with its key.
    struct Session {
        let id = SecureRandom.identifier()
        let key = SecureRandom.bytes(32)
        var digest: Data { Data(SHA256.hash(data: key)) }
    }

    /// Sends `op` for `session`, creating its row first if `create`.
    func call(
        _ session: Session, _ op: IPCStoreRequest.OneOf_Op, create: Bool = false, from address: String = "", nonce: [UInt8] = [],
        deadlineUnixMs: Int64 = 0
    ) async -> IPCStoreResponse {
        var request = IPCStoreRequest()
        request.session.sessionID = session.id
        request.session.address = address
        request.session.requestNonce = Data(nonce)
        request.session.deadlineUnixMs = deadlineUnixMs
        if create {
            request.session.wrappedKey = Data([1, 2, 3])
            request.session.keyDigest = session.digest
        }
        request.op = op
        return await service.handle(request)
    }

    /// A new session, created and logged in as `email`.
    func loggedIn(_ email: String) async -> (Session, IPCUserInfo) {
        let session = Session()
        var login = IPCLogin()
        login.email = email
        let response = await call(session, .login(login), create: true)
        return (session, response.welcome)
    }

    /// A new session logged in as `email`, whose account then gets `password`.
    func loggedIn(_ email: String, password: String) async throws -> Session {
        let (session, _) = await loggedIn(email)
        let hash = try PasswordHash.make(password)
        try await backend.write { tx in
            guard let user = try tx.user(email: email) else { throw HarnessFailure("no account \(email)") }
            try tx.setPasswordHash(user: user.rowId, hash: hash)
        }
        return session
    }

    /// A LOGIN as `email` with `password`.
    static func login(_ email: String, _ password: String) -> IPCLogin {
        var login = IPCLogin()
        login.email = email
        login.password = password
        return login
    }

    struct HarnessFailure: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    func createRoom(_ session: Session, _ name: String) async -> IPCStoreResponse {
        var create = IPCCreateRoom()
        create.name = name
        return await call(session, .createRoom(create))
    }

    func join(_ session: Session, _ roomId: String) async -> IPCStoreResponse {
        var join = IPCJoinRoom()
        join.roomID = roomId
        return await call(session, .joinRoom(join))
    }

    func leave(_ session: Session, _ roomId: String) async -> IPCStoreResponse {
        var leave = IPCLeaveRoom()
        leave.roomID = roomId
        return await call(session, .leaveRoom(leave))
    }

    func post(_ session: Session, _ roomId: String, _ content: String) async -> IPCStoreResponse {
        var post = IPCPostMessage()
        post.roomID = roomId
        post.content = content
        return await call(session, .postMessage(post))
    }

    func history(_ session: Session, _ roomId: String?) async -> IPCStoreResponse {
        var list = IPCListMessages()
        if let roomId { list.roomID = roomId }
        return await call(session, .listMessages(list))
    }

    func members(_ session: Session, _ roomId: String?) async -> IPCStoreResponse {
        var list = IPCListMembers()
        if let roomId { list.roomID = roomId }
        return await call(session, .listMembers(list))
    }
}

extension IPCStoreResponse {
    /// The protocol error text, or nil when the request succeeded.
    var errorText: String? {
        if case .error(let error)? = result { return error.message }
        return nil
    }
}
