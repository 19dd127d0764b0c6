import CZeroMQ
import ChatLog
import ChatWire
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// The programs of the internal plane, each with its own CURVE key pair.
public enum PlaneRole: String, CaseIterable, Sendable {
    case keys, store, edge, ai
}

/// A CURVE key pair: 32-byte Curve25519 keys (written as Z85 text in files).
public struct CurveKeyPair: Sendable, Equatable {
    public var publicKey: [UInt8]
    public var secretKey: [UInt8]

    /// A fresh pair from libzmq (libsodium underneath).
    public static func generate() throws -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41)
        var secretText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else {
            throw ChatError.zmq("zmq_curve_keypair (is libzmq built with CURVE?)")
        }
        guard let publicKey = Z85.decode(String(cString: publicText)), let secretKey = Z85.decode(String(cString: secretText)) else {
            throw ChatError.configuration("zmq_curve_keypair returned keys that are not Z85")
        }
        return CurveKeyPair(publicKey: publicKey, secretKey: secretKey)
    }

    /// The pair whose secret half is `secretKey`.
    public init(secretKey: [UInt8]) throws {
        guard secretKey.count == 32 else { throw ChatError.configuration("a CURVE secret key is 32 bytes") }
        var publicText = [CChar](repeating: 0, count: 41)
        let secretText = Z85.encode(secretKey)
        guard zmq_curve_public(&publicText, secretText) == 0, let publicKey = Z85.decode(String(cString: publicText)) else {
            throw ChatError.zmq("zmq_curve_public")
        }
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    public init(publicKey: [UInt8], secretKey: [UInt8]) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

/// ZeroMQ's Z85 text encoding of binary keys (RFC 32).
public enum Z85 {
    public static func encode(_ bytes: [UInt8]) -> String {
        precondition(bytes.count % 4 == 0, "Z85 encodes multiples of 4 bytes")
        var text = [CChar](repeating: 0, count: bytes.count * 5 / 4 + 1)
        _ = bytes.withUnsafeBufferPointer { zmq_z85_encode(&text, $0.baseAddress, $0.count) }
        return String(cString: text)
    }

    /// The bytes of `text`, or nil when it is not Z85 of a multiple of 5 characters.
    public static func decode(_ text: String) -> [UInt8]? {
        let characters = Array(text.utf8)
        guard !characters.isEmpty, characters.count % 5 == 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: characters.count * 4 / 5)
        let decoded = text.withCString { zmq_z85_decode(&bytes, $0) }
        return decoded == nil ? nil : bytes
    }
}

/// What secures a program's `tcp://` endpoints (docs/security.md, "Who
/// reaches what"): CURVE encrypts and authenticates every connection, and a
/// ZAP handler admits on each bound endpoint only the key pairs of the roles
/// meant to reach it (the store's request socket: the edge's key; its jobs
/// socket: the AI workers' key). `ipc://` endpoints rely on file permissions
/// instead (``SocketDirectory``).
public struct PlaneSecurity: Sendable {
    public let role: PlaneRole
    public let keys: CurveKeyPair
    /// Bound endpoints: their ZAP domain and the keys admitted there.
    let servers: [String: Server]
    /// Endpoints connected to: the server's public key.
    let clients: [String: [UInt8]]

    struct Server: Sendable {
        var domain: String
        var admitted: [[UInt8]: PlaneRole]
    }

    /// The ZAP domain of a bound endpoint, if it is served with CURVE.
    func server(forDomain domain: String) -> Server? { servers.values.first { $0.domain == domain } }

    /// The key files in `directory`: `ROLE.key` (the secret key as Z85,
    /// readable by that program alone) and `ROLE.pub` (the public key).
    public static func secretFile(_ role: PlaneRole, in directory: String) -> String { directory + "/\(role.rawValue).key" }
    public static func publicFile(_ role: PlaneRole, in directory: String) -> String { directory + "/\(role.rawValue).pub" }

    /// The security of a program that binds `binds` (each admitting the
    /// roles listed) and connects to `connects` (each served by a role), or
    /// nil when none of them is `tcp://`. Reads `role`'s secret key and the
    /// public keys of its peers from `directory`; a missing or unreadable
    /// file, or a secret key others can read, is an error that says which.
    public static func load(
        directory: String, role: PlaneRole, binds: [(endpoint: String, admits: [PlaneRole])],
        connects: [(endpoint: String, server: PlaneRole)]
    ) throws -> PlaneSecurity? {
        let tcpBinds = binds.filter { $0.endpoint.hasPrefix("tcp://") }
        let tcpConnects = connects.filter { $0.endpoint.hasPrefix("tcp://") }
        guard !tcpBinds.isEmpty || !tcpConnects.isEmpty else { return nil }
        let keys = try CurveKeyPair(secretKey: try readKey(secretFile(role, in: directory), secret: true))
        var publicKeys: [PlaneRole: [UInt8]] = [:]
        func publicKey(_ peer: PlaneRole) throws -> [UInt8] {
            if let known = publicKeys[peer] { return known }
            let key = try readKey(publicFile(peer, in: directory), secret: false)
            publicKeys[peer] = key
            return key
        }
        var servers: [String: Server] = [:]
        for (index, bind) in tcpBinds.enumerated() {
            var admitted: [[UInt8]: PlaneRole] = [:]
            for peer in bind.admits { admitted[try publicKey(peer)] = peer }
            servers[bind.endpoint] = Server(domain: "udpchat-\(index)", admitted: admitted)
        }
        var clients: [String: [UInt8]] = [:]
        for connect in tcpConnects { clients[connect.endpoint] = try publicKey(connect.server) }
        return PlaneSecurity(role: role, keys: keys, servers: servers, clients: clients)
    }

    private static func readKey(_ path: String, secret: Bool) throws -> [UInt8] {
        let hint =
            "tcp:// endpoints need the CURVE keys that `udpchat-keys generate` (or `udpchat-keys plane-keys`) makes;"
            + " each program needs its own ROLE.key and its peers' .pub files (docs/security.md)"
        var info = stat()
        guard stat(path, &info) == 0 else { throw ChatError.configuration("\(path) is missing: \(hint)") }
        if secret && info.st_mode & 0o077 != 0 {
            throw ChatError.configuration(
                "\(path) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); a secret key must be its owner's alone: chmod 600 \(path)")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ChatError.configuration("cannot read \(path): \(hint)") }
        let line = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .first { !$0.isEmpty && !$0.hasPrefix("#") }
        guard let line, line.utf8.count == 40, let key = Z85.decode(line) else {
            throw ChatError.configuration("\(path) does not hold a CURVE key (40 characters of Z85)")
        }
        return key
    }

    /// Writes a key pair for each role missing one in `directory` (created
    /// mode 0755 when new: the public keys are for everyone). Secret keys are
    /// mode 0600, owned by `owners[role]` when given (uid, gid), so that
    /// each program can read its own only. Returns the roles made now.
    @discardableResult
    public static func generate(in directory: String, owners: [PlaneRole: (uid: UInt32, gid: UInt32)] = [:]) throws -> [PlaneRole] {
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        var made: [PlaneRole] = []
        for role in PlaneRole.allCases {
            let secretPath = secretFile(role, in: directory)
            guard !FileManager.default.fileExists(atPath: secretPath) else { continue }
            let pair = try CurveKeyPair.generate()
            try write("# CURVE public key of udpchat-\(role.rawValue)\n\(Z85.encode(pair.publicKey))\n", to: publicFile(role, in: directory), mode: 0o644)
            try write("# CURVE secret key of udpchat-\(role.rawValue): for that program alone\n\(Z85.encode(pair.secretKey))\n", to: secretPath, mode: 0o600)
            made.append(role)
        }
        for (role, owner) in owners where chown(secretFile(role, in: directory), owner.uid, owner.gid) != 0 {
            throw ChatError.configuration("cannot give \(secretFile(role, in: directory)) to \(owner.uid):\(owner.gid): \(String(cString: strerror(errno)))")
        }
        return made
    }

    private static func write(_ text: String, to path: String, mode: mode_t) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw ChatError.configuration("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(descriptor, $0.baseAddress, $0.count) }) == bytes.count, fchmod(descriptor, mode) == 0
        else {
            throw ChatError.configuration("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// Answers ZAP requests (RFC 27) for the CURVE sockets of one context: a
/// client is admitted on a bound endpoint when its public key is one that
/// endpoint admits; its role becomes the connection's user id. Runs on the
/// reactor's thread; bound before any CURVE socket, so no handshake ever
/// finds no handler (libzmq would then admit every key).
final class ZAPHandler: ReactorDriver {
    static let endpoint = "inproc://zeromq.zap.01"
    let socket: ZMQSocket
    private let security: PlaneSecurity
    private let logger: Logger

    init(context: ZMQContext, security: PlaneSecurity, logger: Logger) throws {
        self.security = security
        self.logger = logger
        socket = try ZMQSocket(context: context, type: ZMQ_REP)
        try socket.set(ZMQ_LINGER, 0)
        try socket.bind(Self.endpoint)
    }

    var wantsWritable: Bool { false }

    func readable(now: UInt64) {
        for _ in 0..<256 {
            guard let frames = try? socket.receive() else { return }
            let reply = answer(frames)
            if case .failed(let error) = socket.send(reply) { logger.warning("ZAP reply failed", metadata: .fields(.error(error))) }
        }
    }

    /// The reply to one request: version, request id, status code and text, user id, metadata.
    func answer(_ frames: [[UInt8]]) -> [[UInt8]] {
        guard frames.count >= 6, frames[0] == Array("1.0".utf8) else {
            return [Array("1.0".utf8), frames.count > 1 ? frames[1] : [], Array("500".utf8), Array("malformed ZAP request".utf8), [], []]
        }
        let requestId = frames[1]
        let domain = String(decoding: frames[2], as: UTF8.self)
        let address = String(decoding: frames[3], as: UTF8.self)
        let mechanism = String(decoding: frames[5], as: UTF8.self)
        func refuse(_ why: String) -> [[UInt8]] {
            logger.warning("internal connection refused", metadata: .fields(.reason(why), .address(address), .value("domain", domain)))
            return [Array("1.0".utf8), requestId, Array("400".utf8), Array(why.utf8), [], []]
        }
        guard let server = security.server(forDomain: domain) else { return refuse("no CURVE endpoint has this domain") }
        guard mechanism == "CURVE", frames.count >= 7 else { return refuse("mechanism \(mechanism), not CURVE") }
        guard let role = server.admitted[frames[6]] else { return refuse("a CURVE key this endpoint does not admit") }
        return [Array("1.0".utf8), requestId, Array("200".utf8), Array("OK".utf8), Array(role.rawValue.utf8), []]
    }

    func service(now: UInt64) -> UInt64? { nil }

    func stop() { socket.close() }
}
