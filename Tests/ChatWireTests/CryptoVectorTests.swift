import ChatWire
import Crypto
import CryptoExtras
import Foundation
import Testing

/// Fixed vectors made with Python's `cryptography` package (an independent
/// implementation), so these tests check our crypto against theirs, not
/// against itself.
@Suite struct CryptoVectorTests {
    static let privateKeyPEM = """
        -----BEGIN PRIVATE KEY-----
        MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC8vZy+XtG4DOxE
        mVnrX5+Zs4YOSNk6rmMcfJ5zwoznSfkbNFeNUQ6u0xzxzZO/yMvVsEAM2B2xRWg7
        CAig6N1H21Q6mY+ZwazIhhW1XbZWAUJIS+nAaZLU9sRv1Q8SV7IE2QYqCHyDLx4R
        SpWR2AHTvC5R8UpsqOfWk6OYNr+vlX4YoW+n5k5dlWBdoGVkuMyQD0JVrL+mC90P
        sUub053ZRScaFk2K2SF8wlooT60uDf1j+180+2zW6tLaaRYHHESgeF64vlcy8CUR
        IHKYzTq3yVsNtFCw3cOvW8VkE+LD3QgbzkBa0XGdXvhmvRgiq0LB76AlY3UD9mpd
        E2PGui35AgMBAAECggEALqqDMt6m4+buFBgGj5fZElu87ZM9grDTeJunYd/cjuNP
        YFaUvzAnfTpdkbvOqECxhWhKreJRlR8gIlheKcrpy3aDYOnPA6lLW1krzOgayTEO
        fmmmphh0YYuSDkSTsWlVbrVqPMJUZusjeAsE6EaMTRneKgyK5krs57UhYeVHh9X1
        33/oP9I4dAniD5Ran3bI4qV4l7csUlluI8bvGP7sTSgt5RbqjZRly7ySSDVhdq3j
        qj2DrPlhLtKeRXsbUyb5JUn3sWJ53o5i5cgm7tzHRkxuoJN2m6fwrckPiWuxPMmC
        pbe2Jwy9xtIMIs4H8nRPEeATwBNp3FK5LAb/AxcmcQKBgQDdzGSCZCE+cNgfQY+T
        Ar8YnZlLIXOtMSkq5MKYoLZjNmbzZFyKnEkw7sb7dtuWdMTtRJ96tJgsBhsxRiai
        C3oTOxESfYmhpXQjvBsQlKeAAmSC0B9m/3kCfJANubHJp2dhQ+gUEXWNIb2uadj1
        jZ9ttPDzCpN+xZxdXPbz6WsmTwKBgQDZ2D+VvrTxfhzFWiXEe5wrfPIHLGP6/Mnq
        hJaPl94Dp+p6Bmlyek0nNy3EXEXeCZ2UcwJxQlBzTgCGuFJdg2bZTJUI8IoIgqyU
        ITd8EVwK6qvcROETKYx/o4HCXo/vZTdJtQqzirgkoc1aFsQ939075YMK4fNiHs7/
        8F+AU0IdNwKBgAEjGyDQApufWHxQibvnN7OYm0CXW1B4AA4IPjcqG8VGciCtUwwi
        4P0vPDXt1hJfZuMQhwDKDD2tilYmVexewrF2jA/cNOhvQLkuLbVYDcPKP1msV3zf
        sm8g1Fw9p3uxMAZ/oqD3tfKTSbWrNUGNCFQ3qUSVuUvdF4AjCeEWQUZhAoGAHF3y
        ebdprIC1kmVYwasu/OK6SYDYTBia2nUFfhFSkbtN5zHqjUOrxE2FIiq51l3+LRSE
        3ua5vyoLG3/pCdBQlj9IsO9RqiYJ/wgMR5WjHLDOTFKT1ID2kLBj90GFELFnb6up
        hxOrQunm6bJJP51lG6WZWNNvc/l7DwzoArfUxiUCgYAVuhAZPc+olBuoBUa3r9Do
        5HEo16nmjfG9vKkHLlROv7QjP2LTNKzekXoY+0CmqIorzWVCSNjR5sjBg1oymvXy
        X7b1HHEAlw4VPHFaBWfVr+2bhQtQQJtI9+vHRSdScrwipC7ufo8oM7Q4HaaboYof
        tmi6wABwPFBW/AoxU4aGmA==
        -----END PRIVATE KEY-----
        """
    static let spkiHex =
        "30820122300d06092a864886f70d01010105000382010f003082010a0282010100bcbd9cbe5ed1b80cec449959eb5f9f99b3860e48d93aae631c7c9e73c28ce749f91b34578d510eaed31cf1cd93bfc8cbd5b0400cd81db145683b0808a0e8dd47db543a998f99c1acc88615b55db6560142484be9c06992d4f6c46fd50f1257b204d9062a087c832f1e114a9591d801d3bc2e51f14a6ca8e7d693a39836bfaf957e18a16fa7e64e5d95605da06564b8cc900f4255acbfa60bdd0fb14b9bd39dd945271a164d8ad9217cc25a284fad2e0dfd63fb5f34fb6cd6ead2da6916071c44a0785eb8be5732f02511207298cd3ab7c95b0db450b0ddc3af5bc56413e2c3dd081bce405ad1719d5ef866bd1822ab42c1efa025637503f66a5d1363c6ba2df90203010001"
    static let fingerprint = "e881341524a274419dd8273299388b392ad10d0b821e22bf27d22f9c0dde9afc"
    /// PSS (SHA-256, MGF1-SHA-256, salt 32) over the bytes 0...31.
    static let signatureHex =
        "219ec65ec2ac75e3503ca37589befafcc1dfed7276c3788660f12d859701e9e9ab123fce342940bf53115eb680b12eafa15c87b67977162b7d0a588c89beeb6b19aaee75267ac8d3df08d637658ea1b8af0f12d9b1541d17437628294de90e733012ece3f3c63619b747f76babea35b5351803c15e774b3e9baf719f67ee0fc4db8318f6656d2afcca89914ba59b86004acc9360874b62490b74d021340d2d861f96f4f8480cafcab7dda182cb6872249df558e434c5bf79c2a3d457e3af564043f2107f1984d2009a7d0ac0133cfb93c4a1776916917086cf287e8e862eaa0b3daf01e079a83c5e2d47760d523678606394ae5dfc175a6e3c1a7b8298670108"
    /// OAEP (SHA-256, MGF1-SHA-256, empty label) of the bytes 0...31.
    static let oaepHex =
        "6b11cadbfbc05be65d0370fab68d35fd7cf3cdb0f95dfdafa3225c9a863d2dd53073b61bd2a1f1a215baaf5dbc45e7dd6d307e3c662732e0b1c90b393c34690a1baba606c4f554c83be12bf4789f7b448b3dd04d210921497f6c8a5bf442629e5488528f3c7b937d8f2b3cc67fee46e4bd6447312fac3ad70849a2f0e04b61a4250df8e38320b62abbab7160fd2580d6cb8cd11e9fdb5a69a9190c1f608e566785f5c357166da4bddf5df166284fc592aa800285d09f66d0bde70e4ecf4d9f85b203f7022225776fba8496de771d4b102ca40798d49141f0bb6a0aa59b47fb3544071b61b73b620d5c606415aef2166f6ba7137d948655c6cfcb6b0454acd90c"
    static let sessionKey = [UInt8](0..<32)

    @Test func fingerprintIsSHA256OfTheSPKI() throws {
        let spki = try #require(Hex.decode(Self.spkiHex))
        #expect(HandshakeCrypto.fingerprint(ofPublicKeyDER: spki) == Self.fingerprint)
        let key = try _RSA.Signing.PrivateKey(pemRepresentation: Self.privateKeyPEM)
        #expect([UInt8](key.publicKey.derRepresentation) == spki)
    }

    @Test func pssSignatureFromPythonVerifies() throws {
        let spki = try #require(Hex.decode(Self.spkiHex))
        let signature = try #require(Hex.decode(Self.signatureHex))
        #expect(HandshakeCrypto.verify(signature: signature, over: Self.sessionKey, publicKeyDER: spki))
        var other = Self.sessionKey
        other[0] ^= 1
        #expect(!HandshakeCrypto.verify(signature: signature, over: other, publicKeyDER: spki))
    }

    /// The signature keys makes for a handshake (the same call as
    /// `KeyService`'s), opened in Python with the bare RSA public operation
    /// and EMSA-PSS undone by hand (RFC 8017 §9.1.2): no PSS verifier of any
    /// library decides, and the salt's length is read, not assumed.
    @Test func ourPSSSignatureCarriesA32ByteSalt() throws {
        let key = try _RSA.Signing.PrivateKey(pemRepresentation: Self.privateKeyPEM)
        let signature = try key.signature(for: Self.sessionKey, padding: .PSS)
        let script = """
            import hashlib, sys
            n_hex, e, sig_hex, msg_hex = sys.argv[1:5]
            n, e, s = int(n_hex, 16), int(e), int(sig_hex, 16)
            k = (n.bit_length() + 7) // 8
            em_bits = n.bit_length() - 1
            em_len = (em_bits + 7) // 8
            em = pow(s, e, n).to_bytes(k, "big")[-em_len:]
            assert em[-1] == 0xBC, "trailer"
            h_len = 32
            masked, h = em[:em_len - h_len - 1], em[em_len - h_len - 1:-1]
            mask, counter = b"", 0
            while len(mask) < len(masked):
                mask += hashlib.sha256(h + counter.to_bytes(4, "big")).digest()
                counter += 1
            db = bytearray(a ^ b for a, b in zip(masked, mask))
            db[0] &= 0xFF >> (8 * em_len - em_bits)
            one = db.index(1)
            assert not any(db[:one]), "padding"
            salt = bytes(db[one + 1:])
            m_hash = hashlib.sha256(bytes.fromhex(msg_hex)).digest()
            assert hashlib.sha256(b"\\0" * 8 + m_hash + salt).digest() == h, "hash"
            print(len(salt))
            """
        let (n, e) = try Self.modulusAndExponent(spki: try #require(Hex.decode(Self.spkiHex)))
        let output = try Self.python(script, [Hex.encode(n), String(e), Hex.encode([UInt8](signature.rawRepresentation)), Hex.encode(Self.sessionKey)])
        #expect(output == "32", "salt length read from the signature: \(output)")
    }

    /// The modulus and public exponent in an RSA SubjectPublicKeyInfo (DER).
    static func modulusAndExponent(spki: [UInt8]) throws -> (modulus: [UInt8], exponent: Int) {
        // SEQUENCE { SEQUENCE { OID, NULL }, BIT STRING { SEQUENCE { INTEGER n, INTEGER e } } }
        var index = 0
        func header(_ tag: UInt8) throws -> Int {
            guard index < spki.count, spki[index] == tag else { throw DERError() }
            index += 1
            var length = Int(spki[index])
            index += 1
            if length & 0x80 != 0 {
                let bytes = length & 0x7F
                length = 0
                for _ in 0..<bytes {
                    length = length << 8 | Int(spki[index])
                    index += 1
                }
            }
            return length
        }
        _ = try header(0x30)
        index += try header(0x30)  // the algorithm
        _ = try header(0x03)
        index += 1  // unused bits
        _ = try header(0x30)
        let modulusLength = try header(0x02)
        var modulus = Array(spki[index..<index + modulusLength])
        index += modulusLength
        while modulus.first == 0 { modulus.removeFirst() }
        let exponentLength = try header(0x02)
        let exponentBytes = spki[index..<index + exponentLength]
        return (modulus, exponentBytes.reduce(0) { $0 << 8 | Int($1) })
    }

    struct DERError: Error {}

    /// Runs `script` with python3 and returns its trimmed stdout; throws on a non-zero exit.
    static func python(_ script: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PythonFailed(message: String(decoding: errors, as: UTF8.self))
        }
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct PythonFailed: Error, CustomStringConvertible {
        var message: String
        var description: String { "python3 failed: \(message)" }
    }

    @Test func oaepCiphertextFromPythonDecrypts() throws {
        let key = try _RSA.Encryption.PrivateKey(pemRepresentation: Self.privateKeyPEM)
        let plaintext = try key.decrypt(try #require(Hex.decode(Self.oaepHex)), padding: .PKCS1_OAEP_SHA256)
        #expect([UInt8](plaintext) == Self.sessionKey)
    }

    @Test func ourOAEPCiphertextDecryptsWithTheSameScheme() throws {
        let key = try _RSA.Encryption.PrivateKey(pemRepresentation: Self.privateKeyPEM)
        let clientKey = try HandshakeCrypto.clientKey(fromBase64: key.publicKey.derRepresentation.base64EncodedString())
        let encrypted = try HandshakeCrypto.encrypt(sessionKey: Self.sessionKey, to: clientKey)
        #expect(encrypted.count == 256)
        #expect([UInt8](try key.decrypt(encrypted, padding: .PKCS1_OAEP_SHA256)) == Self.sessionKey)
    }

    @Test func aesGCMMatchesPython() throws {
        let cipher = try #require(SessionCipher(keyBytes: Self.sessionKey))
        let nonce = try #require(Hex.decode("000000000000000100000002"))
        let plaintext = Array(#"{"type":"HELLO"}"#.utf8)
        let expected = "419857aaccd61f6a535dec4b67b9512ec8ec6280a192c9b50ec4e057cb6b6d7c"
        #expect(Hex.encode(cipher.seal(plaintext, nonce: nonce)) == expected)
        #expect(cipher.open(try #require(Hex.decode(expected)), nonce: nonce) == plaintext)
    }

    @Test func aesGCMRejectsTamperingAndWrongSizes() throws {
        let cipher = try #require(SessionCipher(keyBytes: Self.sessionKey))
        let nonce = try #require(Hex.decode("000000000000000100000002"))
        var sealed = try #require(Hex.decode("419857aaccd61f6a535dec4b67b9512ec8ec6280a192c9b50ec4e057cb6b6d7c"))
        for index in [0, 15, sealed.count - 1] {
            var tampered = sealed
            tampered[index] ^= 0x01
            #expect(cipher.open(tampered, nonce: nonce) == nil, "flipped byte \(index)")
        }
        #expect(cipher.open(Array(sealed.prefix(15)), nonce: nonce) == nil)
        #expect(cipher.open(sealed, nonce: Array(nonce.prefix(8))) == nil)
        sealed.removeLast()
        #expect(cipher.open(sealed, nonce: nonce) == nil)
        #expect(SessionCipher(keyBytes: Array(Self.sessionKey.prefix(16))) == nil)
    }

    @Test func clientKeysOfWebClientSizesAreAcceptedAndOthersRefused() throws {
        let small = try _RSA.Encryption.PrivateKey(unsafeKeySize: _RSA.Signing.KeySize(bitCount: 1024))
        let key1024 = try HandshakeCrypto.clientKey(fromBase64: small.publicKey.derRepresentation.base64EncodedString())
        #expect(key1024.keySizeInBits == 1024)
        #expect(try HandshakeCrypto.encrypt(sessionKey: Self.sessionKey, to: key1024).count == 128)
        // Base64 with line breaks and stray characters is read as the original does.
        let wrapped = small.publicKey.derRepresentation.base64EncodedString(options: .lineLength64Characters)
        #expect(throws: Never.self) { try HandshakeCrypto.clientKey(fromBase64: wrapped) }
        #expect(throws: HandshakeCrypto.KeyError.self) { try HandshakeCrypto.clientKey(fromBase64: "!!!") }
        #expect(throws: HandshakeCrypto.KeyError.self) { try HandshakeCrypto.clientKey(fromBase64: "aGVsbG8gd29ybGQ=") }
        let ecKey = P256.Signing.PrivateKey().publicKey.derRepresentation.base64EncodedString()
        #expect(throws: HandshakeCrypto.KeyError.self) { try HandshakeCrypto.clientKey(fromBase64: ecKey) }
    }

    @Test func serverNoncesAreMarkedAndClientNoncesAreNot() {
        for _ in 0..<100 {
            let server = Nonce.server()
            #expect(server.count == 12 && Nonce.isServerNonce(server))
        }
        let client = Nonce.client(nanoseconds: 1_747_300_000_123_456_789)
        #expect(client.count == 12 && !Nonce.isServerNonce(client))
        #expect(Nonce.timestamp(client) == 1_747_300_000_123_456_789)
    }
}
