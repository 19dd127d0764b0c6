import Crypto
import CryptoExtras
import Foundation

/// The public-key operations of the handshake (docs/protocol.md §2.2, §2.5).
///
/// The server side here needs only public keys: it encrypts the session key
/// to the client. Signing with the server's private key happens in
/// `udpchat-keys` alone.
public enum HandshakeCrypto {
    /// Client keys larger than this are refused: a handshake must stay cheap
    /// for the server, and no client sends more than 2048 bits.
    public static let maximumClientKeyBits = 8192

    /// Why a client key cannot be used.
    public struct KeyError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Decodes `client_key`: Base64 (characters outside the alphabet are
    /// skipped, as the original's decoder does) of an RSA
    /// SubjectPublicKeyInfo of 1024 to 8192 bits.
    public static func clientKey(fromBase64 text: String) throws(KeyError) -> _RSA.Encryption.PublicKey {
        try clientKey(fromDER: try clientKeyDER(fromBase64: text))
    }

    /// The DER inside `client_key` (Base64, characters outside the alphabet skipped).
    public static func clientKeyDER(fromBase64 text: String) throws(KeyError) -> [UInt8] {
        guard let der = Data(base64Encoded: text, options: .ignoreUnknownCharacters), !der.isEmpty else {
            throw KeyError(description: "client_key is not Base64")
        }
        return [UInt8](der)
    }

    /// An RSA SubjectPublicKeyInfo of 1024 to 8192 bits.
    public static func clientKey(fromDER der: [UInt8]) throws(KeyError) -> _RSA.Encryption.PublicKey {
        let key: _RSA.Encryption.PublicKey
        do {
            key = try _RSA.Encryption.PublicKey(unsafeDERRepresentation: der)
        } catch {
            throw KeyError(description: "client_key is not an RSA public key of at least 1024 bits")
        }
        guard key.keySizeInBits <= maximumClientKeyBits else {
            throw KeyError(description: "client_key is larger than \(maximumClientKeyBits) bits")
        }
        return key
    }

    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label (§2.2, step 3).
    public static func encrypt(sessionKey: [UInt8], to clientKey: _RSA.Encryption.PublicKey) throws(KeyError) -> [UInt8] {
        do {
            return [UInt8](try clientKey.encrypt(sessionKey, padding: .PKCS1_OAEP_SHA256))
        } catch {
            throw KeyError(description: "cannot encrypt to client_key: \(error)")
        }
    }

    /// The lowercase hex SHA-256 of a SubjectPublicKeyInfo DER: the
    /// fingerprint clients pin (§2.3).
    public static func fingerprint(ofPublicKeyDER der: [UInt8]) -> String {
        Hex.encode([UInt8](SHA256.hash(data: der)))
    }

    /// Verifies an RSASSA-PSS signature (SHA-256, MGF1-SHA-256, salt 32) by
    /// `publicKeyDER` over `message` (client side, §2.5 step 5).
    public static func verify(signature: [UInt8], over message: [UInt8], publicKeyDER: [UInt8]) -> Bool {
        guard let key = try? _RSA.Signing.PublicKey(unsafeDERRepresentation: publicKeyDER) else { return false }
        return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: message, padding: .PSS)
    }
}

extension HandshakeCrypto {
    /// The RSA key sizes keys are made in, by bit count: 2048, 3072 or 4096
    /// (nil for any other). The one list both the key service and the
    /// client use.
    public static func keySize(bits: Int) -> _RSA.Signing.KeySize? {
        switch bits {
        case 2048: .bits2048
        case 3072: .bits3072
        case 4096: .bits4096
        default: nil
        }
    }
}
