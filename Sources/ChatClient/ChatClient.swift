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
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        /// Where fingerprints are pinned; nil disables pinning (tests).
        public var knownHosts: KnownHosts?
        /// The client key's size; the web client uses 1024 or 2048.
        public var keyBits: Int
        public var timeout: Duration
        /// A request not answered within this is sent again, as the very same
        /// datagram: the server answers a repeat with the same reply and does
        /// not carry the request out twice. nil: never.
        public var retryInterval: Duration?
        /// Acknowledge broadcasts (the web client does; scripts need not).
        public var acknowledge: Bool
        /// Keep every datagram received, for tests that replay or reflect them.
        public var recordDatagrams: Bool
        /// The local address to send from (default: any).
        public var bindHost: String?
        /// The server sets the top bit of every nonce it makes (udpchat
        /// does, docs/protocol.md §3.3; the original server draws them at
        /// random): a packet without it is the client's own, reflected, and
        /// is dropped. Off for a server that does not set it.
        public var serverNoncesMarked = true

        public init(
            host: String, port: Int, knownHosts: KnownHosts? = KnownHosts(path: KnownHosts.defaultPath), keyBits: Int = 2048,
            timeout: Duration = .seconds(5), retryInterval: Duration? = .seconds(1), acknowledge: Bool = true,
            recordDatagrams: Bool = false, bindHost: String? = nil
        ) {
            self.host = host
            self.port = port
            self.knownHosts = knownHosts
            self.keyBits = keyBits
            self.timeout = timeout
            self.retryInterval = retryInterval
            self.acknowledge = acknowledge
            self.recordDatagrams = recordDatagrams
            self.bindHost = bindHost
        }

        /// `host:port` as pinned in known_hosts.
        public var serverName: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

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
    private let serverAddress: SocketAddress
    private let state = Mutex(State())

    private struct Waiter {
        var id: UInt64
        var types: Set<String>
        /// Which reply of those types is this request's, when the reply says
        /// (a MESSAGE_SENT repeats the message): with several requests of a
        /// type on their way, each takes its own.
        var owns: (@Sendable (ServerPacket) -> Bool)?
        var continuation: CheckedContinuation<Arrival, any Error>
    }

    private struct EventWaiter {
        var id: UInt64
        var match: @Sendable (ServerPacket.Received) -> Bool
        var continuation: CheckedContinuation<ServerPacket.Received?, Never>
    }

    /// Events kept for ``nextEvent(timeout:where:)``; older ones are dropped beyond this.
    public static let eventBuffer = 10_000

    private struct State {
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
                    try channel.pipeline.syncOperations.addHandler(ClientHandler(box: box))
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
            } catch ChatClientError.timeout(let what) where ContinuousClock.now < deadline {
                _ = what
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

    // MARK: - Receiving

    fileprivate func received(_ datagram: [UInt8], from source: SocketAddress) {
        // Only the server's datagrams: a plaintext SERVER_ERROR or SESSION_INIT
        // from anywhere else would otherwise answer a waiting request.
        guard source == serverAddress else { return }
        let cipher = state.withLock { state in
            if options.recordDatagrams { state.recorded.append(datagram) }
            return state.cipher
        }
        guard let envelope = try? Envelope.decodeResponse(datagram) else { return }
        switch envelope {
        case .sessionInitReply(let reply):
            resolve("SESSION_INIT", .handshake(reply))
        case .serverError(let message):
            resolve("SERVER_ERROR", .serverError(message))
        case .secure(let secure):
            // The same datagram twice (the network duplicated it) is dropped;
            // a nonce counts as seen only once its datagram authenticated, so
            // that forged datagrams cannot get a real one dropped.
            guard !state.withLock({ $0.seenNonceSet.contains(secure.nonce) }) else { return }
            guard let cipher, let nonce = Hex.decode(secure.nonce), let ciphertext = Hex.decode(secure.ciphertext),
                !options.serverNoncesMarked || Nonce.isServerNonce(nonce), let plaintext = cipher.open(ciphertext, nonce: nonce)
            else { return }
            let fresh = state.withLock { state -> Bool in
                guard state.seenNonceSet.insert(secure.nonce).inserted else { return false }
                state.seenNonces.append(secure.nonce)
                if state.seenNonces.count > 4096 { state.seenNonceSet.remove(state.seenNonces.removeFirst()) }
                return true
            }
            guard fresh, let received = try? ServerPacket.decode(plaintext) else { return }
            if let msgId = received.msgId {
                if options.acknowledge, let ack = try? sealed(.ack(msgId: msgId)) {
                    if options.recordDatagrams { state.withLock { $0.acksSent.append(ack) } }
                    try? sendRaw(ack)
                }
                // A MESSAGE is shown once by its message_id, as the web client does (each
                // transmission of a copy may carry its own msg_id); other broadcasts by msg_id.
                let key: String
                if case .message(let event) = received.packet {
                    key = "message \(event.messageId)"
                } else {
                    key = Self.copyKey(msgId)
                }
                let fresh = state.withLock { state -> Bool in
                    guard !state.seenMsgIdSet.contains(key) else { return false }
                    state.seenMsgIdSet.insert(key)
                    state.seenMsgIds.append(key)
                    if state.seenMsgIds.count > 4096 { state.seenMsgIdSet.remove(state.seenMsgIds.removeFirst()) }
                    return true
                }
                if fresh { deliver(received) }
            } else if !resolve(received.packet.typeName, .packet(received)) {
                deliver(received)
            }
        case .sessionInitRequest:
            return
        }
    }

    /// What the transmissions of one broadcast copy share: udpchat numbers
    /// each transmission in the ninth byte of its `msg_id` (hex characters
    /// 17 and 18), so that byte is left out; another server's ids are kept whole.
    static func copyKey(_ msgId: String) -> String {
        let characters = Array(msgId)
        guard characters.count == 32, characters.allSatisfy(\.isHexDigit) else { return msgId }
        return String(characters[0..<16]) + "··" + String(characters[18...])
    }

    /// The oldest event (a broadcast, or a reply no request waited for) not
    /// yet taken that `match` accepts, waiting up to `timeout` for one; nil
    /// when none came or the client closed.
    public func nextEvent(
        timeout: Duration, where match: @escaping @Sendable (ServerPacket.Received) -> Bool = { _ in true }
    ) async -> ServerPacket.Received? {
        let id = state.withLock { state -> UInt64 in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskGroup(of: ServerPacket.Received?.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let ready = self.state.withLock { state -> ServerPacket.Received?? in
                        if let index = state.broadcasts.firstIndex(where: match) { return .some(state.broadcasts.remove(at: index)) }
                        if state.closed { return .some(nil) }
                        state.eventWaiters.append(EventWaiter(id: id, match: match, continuation: continuation))
                        return .none
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                let waiter = self.state.withLock { state -> EventWaiter? in
                    guard let index = state.eventWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.eventWaiters.remove(at: index)
                }
                waiter?.continuation.resume(returning: nil)
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            if first != nil { return first }
            // The timer fired first, or the wait ended empty: take what the other task got.
            return await group.next() ?? nil
        }
    }

    private func deliver(_ received: ServerPacket.Received) {
        let waiter = state.withLock { state -> EventWaiter? in
            if let index = state.eventWaiters.firstIndex(where: { $0.match(received) }) {
                return state.eventWaiters.remove(at: index)
            }
            state.broadcasts.append(received)
            if state.broadcasts.count > Self.eventBuffer { state.broadcasts.removeFirst() }
            return nil
        }
        waiter?.continuation.resume(returning: received)
    }

    /// Hands `arrival` to the request it answers: the oldest waiting for its
    /// type that owns it, or cannot tell (an ERROR names no request); else,
    /// when only one waits for its type, that one; false when none does.
    /// Taken by the wrong request, a reply would be lost to its own: the
    /// server repeats a reply as the same datagram, which the client drops
    /// as seen.
    @discardableResult
    private func resolve(_ type: String, _ arrival: Arrival) -> Bool {
        let waiter = state.withLock { state -> Waiter? in
            let candidates = state.waiters.indices.filter { state.waiters[$0].types.contains(type) }
            var chosen = candidates.first
            if case .packet(let received) = arrival, type != "ERROR", candidates.count > 1 {
                chosen = candidates.first { state.waiters[$0].owns.map { $0(received.packet) } ?? true }
            }
            guard let index = chosen else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(returning: arrival)
        return waiter != nil
    }
}

/// Lets the channel handler reach the client, which exists only after the channel.
/// Weak, so the client can be released while its channel is open.
private final class ClientBox: Sendable {
    struct Reference { weak var value: ChatClient? }
    let client = Mutex(Reference())
}

private final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let box: ClientBox

    init(box: ClientBox) { self.box = box }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        let bytes = envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) ?? []
        box.client.withLock { $0.value }?.received(bytes, from: envelope.remoteAddress)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}
