import ChatWire
import Foundation

extension EdgeMachine {
    /// The `SECURE_MSG` datagram carrying `json` under a fresh server nonce
    /// (docs/protocol.md §3.5), or nil when it would be too large for UDP.
    static func seal(_ json: [UInt8], sessionId: String, cipher: SessionCipher, nonces: inout Nonce.ServerPool) -> [UInt8]? {
        guard WireSpec.fitsSealed(json.count) else { return nil }
        let nonce = nonces.take()
        return SecureEnvelope.datagram(sessionId: sessionId, nonce: nonce, ciphertext: cipher.seal(json, nonce: nonce))
    }

    /// A plaintext `SERVER_ERROR` for a datagram that proved nothing about
    /// its sender. Its source address may be forged, so the reply is kept
    /// within the source's budget of error replies and within three times the
    /// size of the datagram it answers (a reply that cannot be shortened to
    /// fit is not sent): the server never amplifies a spoofed packet.
    mutating func sendError(_ message: String, answering request: Request, _ now: EdgeTime, _ out: inout EdgeOutput) {
        guard isExempt(request.address) || unauthenticatedLimiter.allow(request.address.source, now: now.monotonic),
            let datagram = Self.errorDatagram(message, budget: Self.amplificationFactor * request.size)
        else {
            metrics.errorRepliesSuppressed.increment()
            return
        }
        write(datagram, to: request.address, &out)
    }

    /// A `SERVER_ERROR` of at most `budget` bytes: the message itself, or the
    /// protocol's text with its detail cut short; nil when not even that fits.
    static func errorDatagram(_ message: String, budget: Int) -> [UInt8]? {
        let datagram = Envelope.serverError(message: message).encoded()
        if datagram.count <= budget { return datagram }
        guard message.hasPrefix(ProtocolText.packetFailurePrefix) else { return nil }
        var detail = message.dropFirst(ProtocolText.packetFailurePrefix.count)
        while !detail.isEmpty {
            detail = detail.dropLast(max(1, (datagram.count - budget) / 2))
            let shorter = Envelope.serverError(message: ProtocolText.packetFailurePrefix + detail + "…").encoded()
            if shorter.count <= budget { return shorter }
        }
        let bare = Envelope.serverError(message: ProtocolText.packetFailurePrefix.trimmingCharacters(in: .whitespaces)).encoded()
        return bare.count <= budget ? bare : nil
    }

    /// Replies to unauthenticated datagrams are at most this many times their size.
    static let amplificationFactor = 3

    func write(_ datagram: [UInt8], to address: PeerAddress, _ out: inout EdgeOutput) {
        metrics.datagramsOut.increment()
        out.datagrams.append(OutboundDatagram(bytes: datagram, address: address))
    }
}
