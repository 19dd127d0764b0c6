import ChatWire
import Crypto
import CryptoExtras
import Foundation

/// The key files under `KEYS_DIR`:
///
/// - `server_private_key.pem`: the RSA identity key, PKCS#8 PEM, mode 0600
///   (the original server's file name and format, docs/protocol.md §2.4);
/// - `server_public_key.pem`: its SubjectPublicKeyInfo PEM;
/// - `key_encryption_key`: 32 random bytes as hex, mode 0600, which seal
///   session keys for the database.
struct KeyFiles {
    let directory: URL

    var privateKey: URL { directory.appendingPathComponent("server_private_key.pem") }
    var publicKey: URL { directory.appendingPathComponent("server_public_key.pem") }
    var keyEncryptionKey: URL { directory.appendingPathComponent("key_encryption_key") }

    init(directory: String) { self.directory = URL(fileURLWithPath: directory) }

    var identityExists: Bool {
        FileManager.default.fileExists(atPath: privateKey.path) || FileManager.default.fileExists(atPath: publicKey.path)
    }

    /// Refuses to go on when an identity key exists and `force` is not set:
    /// clients have pinned its fingerprint.
    func refuseOverwrite(force: Bool) throws {
        guard identityExists && !force else { return }
        throw ChatError.keys(
            "an identity key already exists in \(directory.path); clients have pinned its fingerprint. Use --force to replace it")
    }

    /// Writes a new identity key pair (see ``refuseOverwrite(force:)``).
    func writeIdentity(_ key: _RSA.Signing.PrivateKey, force: Bool) throws {
        try refuseOverwrite(force: force)
        try prepareDirectory()
        try write(key.pkcs8PEMRepresentation, to: privateKey, mode: 0o600)
        try write(key.publicKey.pemRepresentation, to: publicKey, mode: 0o644)
    }

    /// Moves the identity key pair to `retired/` under a UTC timestamp
    /// (private key mode 0600) and returns the private key's new place.
    func retireIdentity(now: Date = Date()) throws -> URL {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withYear, .withMonth, .withDay, .withTime, .withTimeZone]
        let stamp = formatter.string(from: now).replacingOccurrences(of: ":", with: "")
        let folder = directory.appendingPathComponent("retired")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var target = folder.appendingPathComponent("server_private_key-\(stamp).pem")
        var suffix = 1
        while FileManager.default.fileExists(atPath: target.path) {
            suffix += 1
            target = folder.appendingPathComponent("server_private_key-\(stamp)-\(suffix).pem")
        }
        try FileManager.default.moveItem(at: privateKey, to: target)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: target.path)
        try? FileManager.default.removeItem(at: publicKey)
        return target
    }

    /// Creates the key-encryption key if there is none; returns whether it did.
    /// It is never replaced here: every stored session depends on it.
    @discardableResult
    func ensureKeyEncryptionKey() throws -> Bool {
        if FileManager.default.fileExists(atPath: keyEncryptionKey.path) { return false }
        try prepareDirectory()
        try write(Hex.encode(SecureRandom.bytes(32)) + "\n", to: keyEncryptionKey, mode: 0o600)
        return true
    }

    func loadIdentity() throws -> _RSA.Signing.PrivateKey {
        guard FileManager.default.fileExists(atPath: privateKey.path) else {
            throw ChatError.keys("no identity key at \(privateKey.path): run `udpchat-keys generate` (or `udpchat-keys import PATH`) first")
        }
        let pem = try String(contentsOf: privateKey, encoding: .utf8)
        do {
            return try _RSA.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw ChatError.keys("\(privateKey.path) is not an RSA private key of at least 2048 bits in PEM: \(error)")
        }
    }

    func loadKeyEncryptionKey() throws -> SessionKeyWrap {
        guard FileManager.default.fileExists(atPath: keyEncryptionKey.path) else {
            throw ChatError.keys("no key-encryption key at \(keyEncryptionKey.path): run `udpchat-keys generate` first")
        }
        let text = try String(contentsOf: keyEncryptionKey, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = Hex.decode(text), let wrap = SessionKeyWrap(kekBytes: bytes) else {
            throw ChatError.keys("\(keyEncryptionKey.path) must hold 64 lowercase hex characters")
        }
        return wrap
    }

    private func prepareDirectory() throws {
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Writes through a temporary file and a rename, so a crash never leaves
    /// half a key; the mode is set before any key byte is written.
    func write(_ text: String, to url: URL, mode: Int) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        try? FileManager.default.removeItem(at: temporary)
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil, attributes: [.posixPermissions: mode]) else {
            throw ChatError.keys("cannot create \(temporary.path)")
        }
        let handle = try FileHandle(forWritingTo: temporary)
        try handle.write(contentsOf: Data(text.utf8))
        try handle.synchronize()
        try handle.close()
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
        try FileManager.default.moveItem(at: temporary, to: url)
    }
}

extension ChatError.Code {
    /// A key file is missing, unreadable or not what it should be.
    static let keys = ChatError.Code("keys")
}

extension ChatError {
    /// A key-management failure with what to do about it.
    static func keys(_ message: String) -> ChatError { ChatError(.keys, message) }
}

extension _RSA.Signing.PrivateKey {
    /// The fingerprint clients pin: SHA-256 of the public key's SPKI DER.
    var fingerprint: String { HandshakeCrypto.fingerprint(ofPublicKeyDER: [UInt8](publicKey.derRepresentation)) }
}
