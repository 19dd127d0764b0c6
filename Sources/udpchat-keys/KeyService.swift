import ChatLog
import ChatWire
import Crypto
import CryptoExtras
import Foundation
import IPCMessages
import Logging
import Metrics
import Ops

/// Answers the edge's key requests. The identity private key and the
/// key-encryption key stay in this process; only signatures and sealed or
/// opened session keys leave it. It signs only session keys it drew itself,
/// never bytes a caller chose: whoever reaches it cannot make it vouch for a
/// key of their own.
struct KeyService: Sendable {
    let identity: _RSA.Signing.PrivateKey
    /// Makes the handshake signatures with the identity key (`RSA_LIBRARY`).
    let signer: any HandshakeSigner
    let publicKeyDER: [UInt8]
    let fingerprint: String
    let wrap: SessionKeyWrap
    let logger: Logger
    // Made at start so /metrics lists them at zero before the first use.
    private let signatures = Counter(label: "udpchat_keys_signatures_total")
    private let busy = Counter(label: "udpchat_keys_busy_total")
    private let unwrapped = Counter(label: "udpchat_keys_unwraps_total", dimensions: [("result", "ok")])
    private let refused = Counter(label: "udpchat_keys_unwraps_total", dimensions: [("result", "refused")])

    init(identity: _RSA.Signing.PrivateKey, signer: (any HandshakeSigner)? = nil, wrap: SessionKeyWrap, logger: Logger) {
        self.identity = identity
        self.signer = signer ?? SwiftCryptoSigner(key: identity)
        self.publicKeyDER = [UInt8](identity.publicKey.derRepresentation)
        self.fingerprint = identity.fingerprint
        self.wrap = wrap
        self.logger = logger
    }

    /// Implementation constant: keys unwrapped in one request (a page of
    /// sessions a starting edge loads).
    static let maximumBatch = 1000

    /// Answers `request`; new sessions' signatures are made on `pool`, and
    /// handshakes that find the pool's queue full are answered `busy`.
    func handle(_ request: IPCKeysRequest, signingOn pool: ThreadPool) async -> IPCKeysResponse {
        await withCheckedContinuation { continuation in respond(to: request, signingOn: pool) { continuation.resume(returning: $0) } }
    }

    /// ``handle(_:signingOn:)`` without a wait, for the RPC server's reactor
    /// thread: handshakes go straight to the signing threads, which reply
    /// (no task between), the rest runs as a task; `reply` is called once.
    func respond(to request: IPCKeysRequest, signingOn pool: ThreadPool, reply: @escaping @Sendable (IPCKeysResponse) -> Void) {
        switch request.op {
        case .newSession(let new)?:
            newSessions(for: [[UInt8](new.clientKeyDer)], on: pool) { reply($0[0]) }
        case .newSessions(let batch)?:
            guard batch.sessions.count <= IPCKeysRequest.maximumNewSessions else {
                var response = IPCKeysResponse()
                response.failure = failure(.invalidRequest, "at most \(IPCKeysRequest.maximumNewSessions) handshakes per request")
                return reply(response)
            }
            newSessions(for: batch.sessions.map { [UInt8]($0.clientKeyDer) }, on: pool) { results in
                var response = IPCKeysResponse()
                response.newSessions.results = results
                reply(response)
            }
        default:
            Task { reply(answer(request)) }
        }
    }

    /// The requests that sign nothing.
    private func answer(_ request: IPCKeysRequest) -> IPCKeysResponse {
        var response = IPCKeysResponse()
        switch request.op {
        case .getIdentity?:
            response.identity.publicKeyDer = Data(publicKeyDER)
            response.identity.fingerprint = fingerprint
        case .unwrapSessionKey(let unwrap)?:
            response = unwrapOne(unwrap)
        case .unwrapSessionKeys(let batch)?:
            response = unwrapMany(batch)
        case .newSession?, .newSessions?, nil:
            response.failure = failure(.invalidRequest, "the request names no operation")
        }
        return response
    }

    /// New sessions for `clientKeys`, in order, shared out among the
    /// signing threads; all answered `busy` when the queue has no room for them.
    private func newSessions(for clientKeys: [[UInt8]], on pool: ThreadPool, done: @escaping @Sendable ([IPCKeysResponse]) -> Void) {
        pool.submit(clientKeys, { [self] in newSession(clientKeyDER: $0) }) { [self] made in
            if let made { return done(made) }
            busy.increment(by: Int64(clientKeys.count))
            var response = IPCKeysResponse()
            response.failure = failure(.busy, "udpchat-keys has as many handshakes waiting as it takes; try again")
            done(Array(repeating: response, count: clientKeys.count))
        }
    }

    private func unwrapOne(_ unwrap: IPCUnwrapSessionKey) -> IPCKeysResponse {
        var response = IPCKeysResponse()
        let key = wrap.unwrap([UInt8](unwrap.wrappedKey), sessionId: unwrap.sessionID)
        (key == nil ? refused : unwrapped).increment()
        if let key {
            response.unwrapped.sessionKey = Data(key)
        } else {
            logger.warning("a wrapped session key did not open", metadata: .fields(.session(unwrap.sessionID)))
            response.failure = failure(.unwrapFailed, "the wrapped key was not made by this key-encryption key for that session")
        }
        return response
    }

    private func unwrapMany(_ batch: IPCUnwrapSessionKeys) -> IPCKeysResponse {
        var response = IPCKeysResponse()
        guard batch.keys.count <= Self.maximumBatch else {
            response.failure = failure(.invalidRequest, "at most \(Self.maximumBatch) keys per request")
            return response
        }
        response.unwrappedKeys.sessionKeys = batch.keys.map { unwrap in
            let key = wrap.unwrap([UInt8](unwrap.wrappedKey), sessionId: unwrap.sessionID)
            (key == nil ? refused : unwrapped).increment()
            if key == nil { logger.warning("a wrapped session key did not open", metadata: .fields(.session(unwrap.sessionID))) }
            return Data(key ?? [])
        }
        return response
    }

    /// SESSION_INIT's server half (docs/protocol.md §2.2): a fresh session id and
    /// key, the key encrypted to the client (step 3), signed with PSS,
    /// SHA-256, MGF1-SHA-256 and a 32-byte salt over the raw key (step 4),
    /// and wrapped for the store.
    func newSession(clientKeyDER der: [UInt8]) -> IPCKeysResponse {
        var response = IPCKeysResponse()
        let clientKey: _RSA.Encryption.PublicKey
        let encrypted: [UInt8]
        let sessionKey = SessionCipher.random().keyBytes
        do {
            clientKey = try HandshakeCrypto.clientKey(fromDER: der)
            encrypted = try HandshakeCrypto.encrypt(sessionKey: sessionKey, to: clientKey)
        } catch {
            response.failure = failure(.invalidClientKey, error.description)
            return response
        }
        do {
            let sessionId = SecureRandom.identifier()
            let signature = try signer.signPSS(sessionKey)
            var keys = IPCNewSessionKeys()
            keys.sessionID = sessionId
            keys.sessionKey = Data(sessionKey)
            keys.encryptedKey = Data(encrypted)
            keys.signature = Data(signature)
            keys.wrappedKey = Data(wrap.wrap(sessionKey: sessionKey, sessionId: sessionId))
            keys.publicKeyDer = Data(publicKeyDER)
            keys.fingerprint = fingerprint
            signatures.increment()
            response.newSession = keys
        } catch {
            logger.error("signing failed", metadata: .fields(.error(error)))
            response.failure = failure(.signingFailed, "\(error)")
        }
        return response
    }

    private func failure(_ code: ChatError.Code, _ message: String) -> IPCFailure { IPCFailure(ChatError(code, message)) }
}
