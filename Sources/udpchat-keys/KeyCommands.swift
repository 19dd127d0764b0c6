import ArgumentParser
import ChatWire
import CryptoExtras
import Foundation
import IPC
import Ops

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the identity key pair and, if missing, the key-encryption key.")

    @OptionGroup var options: KeysOptions
    @Option(help: "RSA key size: 2048, 3072 or 4096 (default: KEY_BITS, else 2048).")
    var bits: Int?
    @Flag(help: "Replace an existing identity key (clients that pinned the old fingerprint will refuse the new one).")
    var force = false

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-keys") {
            let (settings, common) = try loadSettings()
            let size = try bits ?? settings.int(.keyBits)
            let keySize = try rsaKeySize(size, named: "--bits")
            let files = try options.filesAsOwner(common)
            // Before the slow key generation, not only when writing.
            try files.refuseOverwrite(force: force)
            let key = try _RSA.Signing.PrivateKey(keySize: keySize)
            try files.writeIdentity(key, force: force)
            let createdKEK = try files.ensureKeyEncryptionKey()
            print("identity key: \(files.privateKey.path) (RSA-\(size))")
            print("fingerprint:  \(key.fingerprint)")
            if createdKEK { print("key-encryption key: \(files.keyEncryptionKey.path)") }
            let curve = options.curveDirectory(settings, common)
            let made = try PlaneSecurity.generate(in: curve)
            if !made.isEmpty { print("CURVE keys for tcp:// endpoints: \(curve) (\(made.map(\.rawValue).joined(separator: ", ")))") }
        }
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adopt an existing server_private_key.pem, so fingerprints that clients pinned keep working.")

    @OptionGroup var options: KeysOptions
    @Argument(help: "PEM file with the RSA private key (PKCS#8 or PKCS#1).")
    var path: String
    @Flag(help: "Replace an existing identity key.")
    var force = false

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-keys") {
            let (_, common) = try loadSettings()
            let files = try options.filesAsOwner(common)
            guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else { throw ChatError.keys("cannot read \(path)") }
            let key: _RSA.Signing.PrivateKey
            do {
                key = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
            } catch {
                throw ChatError.keys("\(path) is not an RSA private key of at least 2048 bits in PEM")
            }
            try files.writeIdentity(key, force: force)
            let createdKEK = try files.ensureKeyEncryptionKey()
            print("identity key: \(files.privateKey.path) (RSA-\(key.keySizeInBits), imported from \(path))")
            print("fingerprint:  \(key.fingerprint)")
            if createdKEK { print("key-encryption key: \(files.keyEncryptionKey.path)") }
        }
    }
}

struct Rotate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the identity key with a new one, keeping the old one under retired/ (restart udpchat-keys to serve it).",
        discussion: """
            Clients that pinned the old fingerprint refuse the new key until they are told it: publish the \
            new fingerprint first. Sessions already open keep working (their keys are sealed with the \
            key-encryption key, which is not rotated). To go back: udpchat-keys import retired/FILE --force.
            """)

    @OptionGroup var options: KeysOptions
    @Option(help: "RSA key size: 2048, 3072 or 4096 (default: the current key's size).")
    var bits: Int?

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-keys") {
            let (_, common) = try loadSettings()
            let files = try options.filesAsOwner(common)
            let old = try files.loadIdentity()
            let size = bits ?? old.keySizeInBits
            let keySize = try rsaKeySize(size, named: "--bits")
            let key = try _RSA.Signing.PrivateKey(keySize: keySize)
            let retired = try files.retireIdentity()
            do {
                try files.writeIdentity(key, force: true)
            } catch {
                // Put the old key back rather than leave none.
                try? FileManager.default.removeItem(at: files.privateKey)
                try? FileManager.default.moveItem(at: retired, to: files.privateKey)
                try? files.write(old.publicKey.pemRepresentation, to: files.publicKey, mode: 0o644)
                throw error
            }
            print("retired:      \(retired.path) (fingerprint \(old.fingerprint))")
            print("identity key: \(files.privateKey.path) (RSA-\(size))")
            print("fingerprint:  \(key.fingerprint)")
            print("restart udpchat-keys to serve it; clients that pinned the old fingerprint must be given the new one")
        }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the identity key's fingerprint.")

    @OptionGroup var options: KeysOptions

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-keys") {
            let (_, common) = try loadSettings()
            let files = options.files(common)
            let key = try files.loadIdentity()
            print("fingerprint:  \(key.fingerprint)")
            print("identity key: \(files.privateKey.path) (RSA-\(key.keySizeInBits))")
        }
    }
}
