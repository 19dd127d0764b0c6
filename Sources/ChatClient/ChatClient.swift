import ChatWire
import Crypto
import CryptoExtras
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A client of the UDPChat-AI protocol (docs/protocol.md), as the existing
/// clients speak it: RSA handshake with fingerprint pinning, AES-GCM
/// packets, ACKs for every broadcast copy.
///
/// Responses carry no request id, so a request waits for the first packet of
/// a type it expects (or an error), oldest request first. Broadcasts (the
/// packets with a `msg_id`) are acknowledged, stripped of duplicate copies
/// (a MESSAGE by its `message_id`, as the web client does; others by
/// `msg_id`) and kept, in arrival order, for ``nextEvent(timeout:where:)``.
public final class ChatClient: Sendable {
    /// What the handshake established.
    public struct Session: Sendable, Equatable {
        public var sessionId: String
        public var fingerprint: String
        public var serverPublicKeyDER: [UInt8]
        public var sessionKey: [UInt8]
    }

    /// A packet the server sent, decoded: a reply, a broadcast or an error.
    public enum Arrival: Sendable, Equatable {
        case packet(ServerPacket.Received)
        case serverError(String)
        case handshake(SessionInitReply)
    }

    public let options: Options
    private let channel: any Channel
    /// The local UDP port this client sends from.
    public var localPort: Int? { channel.localAddress?.port }
    let serverAddress: SocketAddress
    let state = Mutex(State())

    struct Waiter {
        var id: UInt64
        var types: Set<String>
        /// Which reply of those types is this request's, when the reply says
        /// (a MESSAGE_SENT repeats the message): with several requests of a
        /// type on their way, each takes its own.
        var owns: (@Sendable (ServerPacket) -> Bool)?
        var continuation: CheckedContinuation<Arrival, any Error>
    }

    struct EventWaiter {
        var id: UInt64
        var match: @Sendable (ServerPacket.Received) -> Bool
        var continuation: CheckedContinuation<ServerPacket.Received?, Never>
    }

    /// Events kept for ``nextEvent(timeout:where:)``; older ones are dropped beyond this.
    public static let eventBuffer = 10_000

    struct State {
        var session: Session?
        var cipher: SessionCipher?
        var waiters: [Waiter] = []
        var broadcasts: [ServerPacket.Received] = []
        var eventWaiters: [EventWaiter] = []
        var nextWaiter: UInt64 = 1
        var seenMsgIds: [String] = []
        var seenMsgIdSet: Set<String> = []
        /// Nonces of datagrams received lately: a duplicated datagram is dropped.
        var seenNonces: [String] = []
        var seenNonceSet: Set<String> = []
        var recorded: [[UInt8]] = []
        var acksSent: [[UInt8]] = []
        var lastNonceTime: UInt64 = 0
        var closed = false
    }

    /// Opens a UDP socket towards `options.host:options.port`. Call ``connect()`` next.
    public init(options: Options) async throws {
        self.options = options
        serverAddress = try SocketAddress.makeAddressResolvingHost(options.host, port: options.port)
        let box = ClientBox()
        let bindHost = options.bindHost ?? (serverAddress.protocol == .inet6 ? "::" : "0.0.0.0")
        channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: WireSpec.maxDatagram + 1))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        DatagramReceiver { bytes, source in box.client.withLock { $0.value }?.received(bytes, from: source) })
                }
            }
            .bind(host: bindHost, port: 0)
            .get()
        box.client.withLock { $0.value = self }
    }

    /// The session, once connected.
    public var session: Session? { state.withLock { $0.session } }

    /// Every datagram received so far, when `recordDatagrams` is set.
    public var recordedDatagrams: [[UInt8]] { state.withLock { $0.recorded } }

    /// Every ACK datagram sent so far, when `recordDatagrams` is set.
    public var recordedAcks: [[UInt8]] { state.withLock { $0.acksSent } }

    // MARK: - Handshake

    /// Runs the handshake (docs/protocol.md §2.5): checks that the fingerprint is
    /// the SHA-256 of the key sent, that it matches the pinned one (pinning it
    /// on first use), opens the session key and verifies its signature.
    @discardableResult
    public func connect() async throws -> Session {
        let privateKey: _RSA.Encryption.PrivateKey
        if let size = HandshakeCrypto.keySize(bits: options.keyBits) {
            privateKey = try _RSA.Encryption.PrivateKey(keySize: size)
        } else if options.keyBits == 1024 {
            // What the web client makes; the server accepts it (docs/protocol.md §2.1).
            privateKey = try _RSA.Encryption.PrivateKey(unsafeKeySize: _RSA.Signing.KeySize(bitCount: 1024))
        } else {
            throw ChatClientError.handshake("unsupported client key size \(options.keyBits)")
        }
        let request = Envelope.sessionInitRequest(clientKey: privateKey.publicKey.derRepresentation.base64EncodedString()).encoded()
        // A lost handshake is asked for again; each request makes a session on
        // the server, and the first reply to arrive is the one adopted.
        let deadline = ContinuousClock.now + options.timeout
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            let attempt = min(remaining, options.retryInterval ?? remaining)
            do {
                switch try await exchange(request, expecting: ["SESSION_INIT"], timeout: attempt) {
                case .handshake(let reply): return try adopt(reply, privateKey: privateKey)
                case .serverError(let text): throw ChatClientError.serverError(text)
                case .packet(let packet): throw ChatClientError.unexpected("\(packet.packet.typeName)")
                }
            } catch let error as ChatError where error.code == .noAnswer && ContinuousClock.now < deadline {
                continue
            }
        }
    }

    private func adopt(_ reply: SessionInitReply, privateKey: _RSA.Encryption.PrivateKey) throws -> Session {
        guard let publicKeyDER = Hex.decode(reply.serverPublicKey), let encryptedKey = Hex.decode(reply.encryptedKey),
            let signature = Hex.decode(reply.signature)
        else { throw ChatClientError.handshake("a field is not lowercase hex") }
        let fingerprint = HandshakeCrypto.fingerprint(ofPublicKeyDER: publicKeyDER)
        guard fingerprint == reply.fingerprint.lowercased() else {
            throw ChatClientError.handshake("the fingerprint is not the SHA-256 of the server key")
        }
        if let knownHosts = options.knownHosts {
            if let pinned = knownHosts.fingerprint(for: options.serverName) {
                guard pinned == fingerprint else {
                    throw ChatClientError.fingerprintMismatch(
                        server: options.serverName, pinned: pinned, presented: fingerprint, knownHosts: knownHosts.path)
                }
            } else {
                try knownHosts.pin(fingerprint, for: options.serverName)
            }
        }
        let key: [UInt8]
        do {
            key = [UInt8](try privateKey.decrypt(encryptedKey, padding: .PKCS1_OAEP_SHA256))
        } catch {
            throw ChatClientError.handshake("the session key does not decrypt with our key")
        }
        guard let cipher = SessionCipher(keyBytes: key) else { throw ChatClientError.handshake("the session key is not 32 bytes") }
        guard HandshakeCrypto.verify(signature: signature, over: key, publicKeyDER: publicKeyDER) else {
            throw ChatClientError.handshake("the signature over the session key does not verify (PSS, salt 32)")
        }
        let session = Session(sessionId: reply.sessionId, fingerprint: fingerprint, serverPublicKeyDER: publicKeyDER, sessionKey: key)
        state.withLock { state in
            state.session = session
            state.cipher = cipher
        }
        return session
    }

    // MARK: - Requests

    /// Sends `packet` and waits for the first reply whose type is in
    /// `expecting`. An `ERROR` reply throws ``ChatClientError/refused(_:)``
    /// unless `ERROR` is expected; a `SERVER_ERROR` throws
    /// ``ChatClientError/serverError(_:)``.
    public func request(
        _ packet: ClientPacket, expecting types: Set<String>, owns: (@Sendable (ServerPacket) -> Bool)? = nil
    ) async throws -> ServerPacket {
        let arrival = try await exchange(try sealed(packet), expecting: types.union(["ERROR"]), owns: owns)
        switch arrival {
        case .packet(let received):
            if case .error(let message) = received.packet, !types.contains("ERROR") { throw ChatClientError.refused(message) }
            return received.packet
        case .serverError(let text): throw ChatClientError.serverError(text)
        case .handshake: throw ChatClientError.unexpected("SESSION_INIT")
        }
    }

    /// Sends `packet` without waiting for anything.
    public func send(_ packet: ClientPacket) throws {
        try sendRaw(try sealed(packet))
    }

    /// The datagram that would carry `packet`: a fresh nonce each call.
    public func sealed(_ packet: ClientPacket) throws -> [UInt8] {
        try sealed(json: packet.json.serialized())
    }

    /// The datagram carrying arbitrary inner JSON (tests use it for
    /// malformed packets).
    public func sealed(json: [UInt8]) throws -> [UInt8] {
        let (session, cipher, nonce) = try state.withLock { state -> (Session, SessionCipher, [UInt8]) in
            guard let session = state.session, let cipher = state.cipher else { throw ChatClientError.notConnected }
            // Strictly increasing timestamps, as a fast client's must be for the server's replay window.
            let now = UInt64(Date().timeIntervalSince1970 * 1_000_000_000)
            state.lastNonceTime = max(now, state.lastNonceTime + 1)
            return (session, cipher, Nonce.client(nanoseconds: state.lastNonceTime))
        }
        let ciphertext = cipher.seal(json, nonce: nonce)
        return Envelope.secure(
            SecureEnvelope(sessionId: session.sessionId, nonce: Hex.encode(nonce), ciphertext: Hex.encode(ciphertext))
        ).encoded()
    }

    /// Sends a datagram as it is.
    public func sendRaw(_ datagram: [UInt8]) throws {
        guard !state.withLock({ $0.closed }) else { throw ChatClientError.notConnected }
        let envelope = AddressedEnvelope(remoteAddress: serverAddress, data: ByteBuffer(bytes: datagram))
        channel.writeAndFlush(envelope, promise: nil)
    }

    /// Sends a datagram and waits for the first arrival of a type in
    /// `types` (`SERVER_ERROR` always counts).
    public func exchange(
        _ datagram: [UInt8], expecting types: Set<String>, timeout: Duration? = nil, owns: (@Sendable (ServerPacket) -> Bool)? = nil
    ) async throws -> Arrival {
        let waiterId = state.withLock { state -> UInt64 in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timeout = timeout ?? options.timeout
        return try await withThrowingTaskGroup(of: Arrival.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { continuation in
                    self.state.withLock { state in
                        state.waiters.append(
                            Waiter(id: waiterId, types: types.union(["SERVER_ERROR"]), owns: owns, continuation: continuation))
                    }
                    do {
                        try self.sendRaw(datagram)
                    } catch {
                        self.failWaiter(waiterId, error)
                    }
                }
            }
            group.addTask {
                let deadline = ContinuousClock.now + timeout
                // Not a handshake: a repeated SESSION_INIT would make a second session.
                if let retry = self.options.retryInterval, !types.contains("SESSION_INIT") {
                    while ContinuousClock.now + retry < deadline {
                        try await Task.sleep(for: retry)
                        try? self.sendRaw(datagram)
                    }
                }
                try await Task.sleep(until: deadline)
                self.failWaiter(waiterId, ChatClientError.timeout("waited \(timeout) for \(types.sorted().joined(separator: " or "))"))
                throw ChatClientError.timeout("waited \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    private func failWaiter(_ id: UInt64, _ error: any Error) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(throwing: error)
    }

    /// Decrypts a `SECURE_MSG` datagram of this session (for tests that
    /// inspect what was received); nil for anything else.
    public func open(_ datagram: [UInt8]) -> ServerPacket.Received? {
        guard case .secure(let secure)? = try? Envelope.decodeResponse(datagram), let cipher = state.withLock({ $0.cipher }),
            let nonce = Hex.decode(secure.nonce), let ciphertext = Hex.decode(secure.ciphertext),
            let plaintext = cipher.open(ciphertext, nonce: nonce)
        else { return nil }
        return try? ServerPacket.decode(plaintext)
    }

    /// Closes the socket; waiting requests fail.
    public func close() async {
        let (waiters, eventWaiters) = state.withLock { state in
            state.closed = true
            defer {
                state.waiters.removeAll()
                state.eventWaiters.removeAll()
            }
            return (state.waiters, state.eventWaiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: ChatClientError.notConnected) }
        for waiter in eventWaiters { waiter.continuation.resume(returning: nil) }
        try? await channel.close()
    }
}
