import ChatWire
import CryptoExtras
import OpenSSLRSA

/// What makes the handshake's signature: RSASSA-PSS, SHA-256, MGF1-SHA-256,
/// salt 32, over the session key (docs/protocol.md §2.2, step 4).
protocol HandshakeSigner: Sendable {
    func signPSS(_ message: [UInt8]) throws -> [UInt8]
}

extension OpenSSLRSAKey: HandshakeSigner {}

/// swift-crypto's (BoringSSL's) signing: the fallback (`RSA_LIBRARY=swift-crypto`).
struct SwiftCryptoSigner: HandshakeSigner {
    let key: _RSA.Signing.PrivateKey
    func signPSS(_ message: [UInt8]) throws -> [UInt8] { [UInt8](try key.signature(for: message, padding: .PSS).rawRepresentation) }
}

/// The signer `RSA_LIBRARY` names for `identity`.
func handshakeSigner(_ library: String, identity: _RSA.Signing.PrivateKey) throws -> any HandshakeSigner {
    switch library {
    case "openssl": try OpenSSLRSAKey(privateKeyDER: [UInt8](identity.derRepresentation))
    case "swift-crypto": SwiftCryptoSigner(key: identity)
    default: throw ChatError.configuration("RSA_LIBRARY=\(library): expected openssl or swift-crypto")
    }
}
