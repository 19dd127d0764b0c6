/// The `SESSION_INIT` reply fields (docs/protocol.md §2.3), all lowercase hex
/// except the session id, which is hex already.
public struct SessionInitReply: Equatable, Sendable {
    public var sessionId: String
    public var encryptedKey: String
    public var serverPublicKey: String
    public var signature: String
    public var fingerprint: String

    public init(sessionId: String, encryptedKey: String, serverPublicKey: String, signature: String, fingerprint: String) {
        self.sessionId = sessionId
        self.encryptedKey = encryptedKey
        self.serverPublicKey = serverPublicKey
        self.signature = signature
        self.fingerprint = fingerprint
    }
}

/// The `SECURE_MSG` fields (docs/protocol.md §3.1), as received: the hex is
/// checked when the payload is opened, not here.
public struct SecureEnvelope: Equatable, Sendable {
    public var sessionId: String
    public var nonce: String
    public var ciphertext: String

    public init(sessionId: String, nonce: String, ciphertext: String) {
        self.sessionId = sessionId
        self.nonce = nonce
        self.ciphertext = ciphertext
    }
}

extension SecureEnvelope {
    /// The `SECURE_MSG` datagram carrying `ciphertext`, written byte by byte:
    /// the same bytes as `Envelope.secure(...).encoded()` without building a
    /// JSON tree (every broadcast copy and every bench request takes this path).
    public static func datagram(sessionId: String, nonce: [UInt8], ciphertext: [UInt8]) -> [UInt8] {
        var datagram: [UInt8] = []
        datagram.reserveCapacity(WireSpec.secureEnvelopeOverhead + 2 * ciphertext.count)
        datagram.append(contentsOf: #"{"type":"SECURE_MSG","session_id":""#.utf8)
        datagram.append(contentsOf: sessionId.utf8)
        datagram.append(contentsOf: #"","nonce":""#.utf8)
        Hex.append(nonce, to: &datagram)
        datagram.append(contentsOf: #"","ciphertext":""#.utf8)
        Hex.append(ciphertext, to: &datagram)
        datagram.append(contentsOf: #""}"#.utf8)
        return datagram
    }
}

/// One datagram's outer JSON object (docs/protocol.md §1.2).
public enum Envelope: Equatable, Sendable {
    case sessionInitRequest(clientKey: String)
    case sessionInitReply(SessionInitReply)
    case secure(SecureEnvelope)
    case serverError(message: String)

    /// The datagram payload.
    public func encoded() -> [UInt8] {
        let object: JSONValue
        switch self {
        case .sessionInitRequest(let key):
            object = ["type": "SESSION_INIT", "client_key": .string(key)]
        case .sessionInitReply(let reply):
            object = [
                "type": "SESSION_INIT", "session_id": .string(reply.sessionId),
                "encrypted_key": .string(reply.encryptedKey), "server_pubkey": .string(reply.serverPublicKey),
                "signature": .string(reply.signature), "fingerprint": .string(reply.fingerprint),
            ]
        case .secure(let secure):
            object = [
                "type": "SECURE_MSG", "session_id": .string(secure.sessionId), "nonce": .string(secure.nonce),
                "ciphertext": .string(secure.ciphertext),
            ]
        case .serverError(let message):
            object = ["type": "SERVER_ERROR", "message": .string(message)]
        }
        return object.serialized()
    }

    /// A datagram from a client that the server cannot use; `replyText` is
    /// the `SERVER_ERROR` message the original sends for it (§4.1).
    public struct RequestError: Error, Equatable, Sendable {
        public var replyText: String
        public init(replyText: String) { self.replyText = replyText }
    }

    /// Decodes a datagram as the server receives it.
    public static func decodeRequest(_ bytes: [UInt8]) throws(RequestError) -> Envelope {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            throw RequestError(replyText: ProtocolText.packetFailurePrefix + error.description)
        }
        guard let object = value.objectValue else { throw RequestError(replyText: ProtocolText.invalidMessageFormat) }
        func nonEmpty(_ key: String) -> String? {
            guard let text = object[key]?.stringValue, !text.isEmpty else { return nil }
            return text
        }
        switch object["type"] {
        case .string("SESSION_INIT")?:
            guard let key = nonEmpty("client_key") else { throw RequestError(replyText: ProtocolText.missingClientKey) }
            return .sessionInitRequest(clientKey: key)
        case .string("SECURE_MSG")?:
            guard let id = nonEmpty("session_id"), let nonce = nonEmpty("nonce"), let ciphertext = nonEmpty("ciphertext")
            else { throw RequestError(replyText: ProtocolText.incompleteMessage) }
            return .secure(SecureEnvelope(sessionId: id, nonce: nonce, ciphertext: ciphertext))
        case nil, .null?:
            throw RequestError(replyText: ProtocolText.unknownMessageType("None"))
        case .string(let other)?:
            throw RequestError(replyText: ProtocolText.unknownMessageType(ProtocolText.echo(other)))
        case let other?:
            throw RequestError(replyText: ProtocolText.unknownMessageType(ProtocolText.echo(other.jsonText)))
        }
    }

    /// Decodes a datagram as a client receives it.
    public static func decodeResponse(_ bytes: [UInt8]) throws(WireDecodeError) -> Envelope {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            throw WireDecodeError("not JSON: \(error)")
        }
        let object = try WireDecodeError.object(value, "datagram")
        switch try WireDecodeError.string(object, "type") {
        case "SESSION_INIT":
            return .sessionInitReply(
                SessionInitReply(
                    sessionId: try WireDecodeError.string(object, "session_id"),
                    encryptedKey: try WireDecodeError.string(object, "encrypted_key"),
                    serverPublicKey: try WireDecodeError.string(object, "server_pubkey"),
                    signature: try WireDecodeError.string(object, "signature"),
                    fingerprint: try WireDecodeError.string(object, "fingerprint")))
        case "SECURE_MSG":
            return .secure(
                SecureEnvelope(
                    sessionId: try WireDecodeError.string(object, "session_id"),
                    nonce: try WireDecodeError.string(object, "nonce"),
                    ciphertext: try WireDecodeError.string(object, "ciphertext")))
        case "SERVER_ERROR":
            return .serverError(message: try WireDecodeError.string(object, "message"))
        case let other:
            throw WireDecodeError("unknown datagram type \(other)")
        }
    }
}
