import ChatWire
import CryptoExtras
import OpenSSLRSA

/// The clients' side of a handshake, as every client must do it
/// (docs/protocol.md §2.5): the SESSION_INIT request with the clients'
/// shared key, and each reply checked before its session is used. The
/// session key must open with that key, and the server must have signed
/// it with the key it presents, whose fingerprint it gives. That key must
/// be the same in every reply of the run.
///
/// Each RSA operation goes through the faster library here: the bench
/// shares the cores of the servers it measures. Opening the session key
/// (private) costs half as much with the system's OpenSSL as with
/// swift-crypto; checking the signature (public), a quarter less with
/// swift-crypto (docs/performance.md, "RSA"). Used on one worker's event
/// loop only.
final class BenchHandshake {
    let request: [UInt8]
    private let clientKey: OpenSSLRSAKey
    /// The server's key as the first reply presented it.
    private var server: (hex: String, fingerprint: String, key: _RSA.Signing.PublicKey)?

    init(key: _RSA.Encryption.PrivateKey) throws {
        clientKey = try OpenSSLRSAKey(privateKeyDER: [UInt8](key.derRepresentation))
        request = Envelope.sessionInitRequest(clientKey: key.publicKey.derRepresentation.base64EncodedString()).encoded()
    }

    /// The session key of `reply`, or why it cannot be used.
    func open(_ reply: SessionInitReply) -> Result<SessionCipher, BenchError> {
        let server: _RSA.Signing.PublicKey
        switch self.server {
        case let known? where known.hex == reply.serverPublicKey && known.fingerprint == reply.fingerprint:
            server = known.key
        case _?:
            return .failure(BenchError("the server presented another key or fingerprint than in its first reply"))
        case nil:
            guard let der = Hex.decode(reply.serverPublicKey), let key = try? _RSA.Signing.PublicKey(unsafeDERRepresentation: der) else {
                return .failure(BenchError("the SESSION_INIT reply's server key is not an RSA public key in hex DER"))
            }
            guard HandshakeCrypto.fingerprint(ofPublicKeyDER: der) == reply.fingerprint else {
                return .failure(BenchError("the SESSION_INIT reply's fingerprint is not the SHA-256 of its server key"))
            }
            self.server = (reply.serverPublicKey, reply.fingerprint, key)
            server = key
        }
        guard let encrypted = Hex.decode(reply.encryptedKey), let keyBytes = clientKey.decryptOAEP(encrypted),
            let cipher = SessionCipher(keyBytes: keyBytes)
        else { return .failure(BenchError("the SESSION_INIT reply's key does not decrypt")) }
        guard let signature = Hex.decode(reply.signature),
            server.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: keyBytes, padding: .PSS)
        else {
            return .failure(BenchError("the signature over the session key does not verify (PSS, salt 32)"))
        }
        return .success(cipher)
    }
}
