import ChatWire
import NIOCore
import Synchronization

/// Receiving: a datagram from the channel is opened, acknowledged when it
/// is a broadcast, and handed to the request or event waiter it answers.
extension ChatClient {
    func received(_ datagram: [UInt8], from source: SocketAddress) {
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
final class ClientBox: Sendable {
    struct Reference { weak var value: ChatClient? }
    let client = Mutex(Reference())
}
