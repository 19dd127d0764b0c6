import CLibCrypto
import ChatWire

extension ChatError.Code {
    /// The system's OpenSSL refused an RSA operation.
    public static let openSSL = ChatError.Code("openssl")
}

/// The RSA operations of the handshake through the system's OpenSSL
/// (libcrypto), about twice as fast as swift-crypto's for a private key of
/// 2048 bits here (docs/performance.md): RSASSA-PSS with SHA-256,
/// MGF1-SHA-256 and a 32-byte salt (docs/protocol.md §2.2, step 4), and
/// RSAES-OAEP with SHA-256 (step 3). udpchat-keys signs with it; the bench
/// client opens session keys with it. The same
/// operations as ``HandshakeCrypto`` with swift-crypto; the tests check each
/// library's output with the other.
///
/// An `EVP_PKEY` may be used from several threads at once (each call makes
/// its own context), so one key serves every thread.
public final class OpenSSLRSAKey: @unchecked Sendable {
    private let key: OpaquePointer

    /// A private key from its DER (PKCS#1 or PKCS#8).
    public convenience init(privateKeyDER der: [UInt8]) throws(ChatError) {
        try self.init(der, "d2i_AutoPrivateKey") { d2i_AutoPrivateKey(nil, &$0, $1) }
    }

    /// A public key from its SubjectPublicKeyInfo DER.
    public convenience init(publicKeyDER der: [UInt8]) throws(ChatError) {
        try self.init(der, "d2i_PUBKEY") { d2i_PUBKEY(nil, &$0, $1) }
    }

    private init(_ der: [UInt8], _ call: String, _ parse: (inout UnsafePointer<UInt8>?, Int) -> OpaquePointer?) throws(ChatError) {
        let parsed = der.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            var pointer = buffer.baseAddress
            return parse(&pointer, buffer.count)
        }
        guard let parsed else { throw Self.failure(call) }
        key = parsed
    }

    deinit { EVP_PKEY_free(key) }

    /// The modulus size in bytes: a signature's and a ciphertext's length.
    public var size: Int { Int(EVP_PKEY_get_size(key)) }

    /// RSASSA-PSS over SHA-256 of `message`, MGF1-SHA-256, salt 32.
    public func signPSS(_ message: [UInt8]) throws(ChatError) -> [UInt8] {
        ERR_clear_error()
        guard let context = EVP_MD_CTX_new() else { throw Self.failure("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(context) }
        var keyContext: OpaquePointer?
        guard EVP_DigestSignInit(context, &keyContext, EVP_sha256(), nil, key) == 1,
            EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PSS_PADDING) == 1,
            EVP_PKEY_CTX_set_rsa_pss_saltlen(keyContext, 32) == 1,
            EVP_PKEY_CTX_set_rsa_mgf1_md(keyContext, EVP_sha256()) == 1
        else { throw Self.failure("EVP_DigestSignInit (PSS)") }
        return try output(of: "EVP_DigestSign", from: message) { EVP_DigestSign(context, $0, &$1, $2, $3) }
    }

    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label, to this (public) key.
    public func encryptOAEP(_ plaintext: [UInt8]) throws(ChatError) -> [UInt8] {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new(key, nil) else { throw Self.failure("EVP_PKEY_CTX_new") }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_encrypt_init(context) == 1,
            EVP_PKEY_CTX_set_rsa_padding(context, RSA_PKCS1_OAEP_PADDING) == 1,
            EVP_PKEY_CTX_set_rsa_oaep_md(context, EVP_sha256()) == 1,
            EVP_PKEY_CTX_set_rsa_mgf1_md(context, EVP_sha256()) == 1
        else { throw Self.failure("EVP_PKEY_encrypt_init (OAEP)") }
        return try output(of: "EVP_PKEY_encrypt", from: plaintext) { EVP_PKEY_encrypt(context, $0, &$1, $2, $3) }
    }

    /// The plaintext of an RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label)
    /// ciphertext to this private key; nil when it does not decrypt.
    public func decryptOAEP(_ ciphertext: [UInt8]) -> [UInt8]? {
        // A failure leaves OpenSSL's reasons on this thread's error queue: emptied after.
        defer { ERR_clear_error() }
        guard let context = EVP_PKEY_CTX_new(key, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_decrypt_init(context) == 1,
            EVP_PKEY_CTX_set_rsa_padding(context, RSA_PKCS1_OAEP_PADDING) == 1,
            EVP_PKEY_CTX_set_rsa_oaep_md(context, EVP_sha256()) == 1,
            EVP_PKEY_CTX_set_rsa_mgf1_md(context, EVP_sha256()) == 1
        else { return nil }
        return try? output(of: "EVP_PKEY_decrypt", from: ciphertext) { EVP_PKEY_decrypt(context, $0, &$1, $2, $3) }
    }

    /// Runs an OpenSSL call that writes at most a modulus of bytes from
    /// `input`: (output, its length in and out, input, its length); what it wrote.
    private func output(
        of call: String, from input: [UInt8],
        _ operation: (UnsafeMutablePointer<UInt8>?, inout Int, UnsafePointer<UInt8>?, Int) -> Int32
    ) throws(ChatError) -> [UInt8] {
        var length = size
        var bytes = [UInt8](repeating: 0, count: length)
        let result = bytes.withUnsafeMutableBufferPointer { out in
            input.withUnsafeBufferPointer { operation(out.baseAddress, &length, $0.baseAddress, $0.count) }
        }
        guard result == 1 else { throw Self.failure(call) }
        return Array(bytes.prefix(length))
    }

    /// The failed call and OpenSSL's reason for it (the thread's error queue, emptied).
    private static func failure(_ call: String) -> ChatError {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reasons.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return ChatError(.openSSL, "\(call) failed" + (reasons.isEmpty ? "" : ": " + reasons.joined(separator: "; ")))
    }
}
