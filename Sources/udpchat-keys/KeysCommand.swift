import ArgumentParser
import ChatLog
import ChatWire
import Crypto
import CryptoExtras
import Foundation
import IPC
import IPCMessages
import Ops

@main
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpchat-keys",
        abstract: "The server's identity key and key-encryption key: set them up, show them, serve them.",
        discussion: "With no subcommand it serves: signatures for handshakes and session-key wrapping for udpchat-edge.",
        subcommands: [Serve.self, Generate.self, Import.self, Rotate.self, Show.self, PlaneKeys.self],
        defaultSubcommand: Serve.self)
}

/// Options every subcommand shares.
struct KeysOptions: ParsableArguments {
    @Option(name: .customLong("dir"), help: "Key directory (default: KEYS_DIR, else $DATA_DIR/keys).")
    var directory: String?

    func files(_ common: CommonSettings) -> KeyFiles { KeyFiles(directory: directory ?? common.keysDir) }

    /// Where the CURVE key pairs go: CURVE_DIR when set, else `curve/`
    /// beside the identity key.
    func curveDirectory(_ settings: SettingsReader, _ common: CommonSettings) -> String {
        if settings.raw(.curveDir) != nil { return common.curveDir }
        return (directory ?? common.keysDir) + "/curve"
    }

    /// The key files, after becoming the key directory's owner when run as
    /// root (so a new key stays readable by udpchat-keys).
    func filesAsOwner(_ common: CommonSettings) throws -> KeyFiles {
        let files = files(common)
        try FileOwner.become(ownerOf: files.directory.path)
        return files
    }
}

func loadSettings() throws -> (SettingsReader, CommonSettings) {
    let settings = try SettingsReader.load()
    return (settings, try CommonSettings(settings))
}

/// The RSA sizes the key commands make; `name` is the option or setting that asked.
func rsaKeySize(_ bits: Int, named name: String) throws -> _RSA.Signing.KeySize {
    guard let size = HandshakeCrypto.keySize(bits: bits) else { throw ChatError.keys("\(name) must be 2048, 3072 or 4096, not \(bits)") }
    return size
}

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

struct PlaneKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plane-keys",
        abstract: "Create the CURVE key pairs (one per program: keys, store, edge, ai) that tcp:// endpoints need; keeps existing ones.",
        discussion: """
            Each program reads its own ROLE.key and its peers' ROLE.pub from CURVE_DIR. On several hosts, copy \
            to each host the .key of the programs it runs and every .pub. --owner ROLE=UID:GID gives a \
            program's secret key to its user (as root), so no other program can read it.
            """)

    @OptionGroup var options: KeysOptions
    @Option(name: .customLong("curve-dir"), help: "Where to write them (default: CURVE_DIR, else curve/ in the key directory).")
    var curveDir: String?
    @Option(name: .customLong("owner"), help: "ROLE=UID:GID: the owner of ROLE.key (repeatable).")
    var owners: [String] = []

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-keys") {
            let (settings, common) = try loadSettings()
            var owned: [PlaneRole: (uid: UInt32, gid: UInt32)] = [:]
            for owner in owners {
                let parts = owner.split(separator: "=", maxSplits: 1)
                let ids = parts.count == 2 ? parts[1].split(separator: ":") : []
                guard parts.count == 2, let role = PlaneRole(rawValue: String(parts[0])), ids.count == 2, let uid = UInt32(ids[0]),
                    let gid = UInt32(ids[1])
                else {
                    throw ChatError.keys("--owner \(owner): expected ROLE=UID:GID with ROLE one of keys, store, edge, ai")
                }
                owned[role] = (uid, gid)
            }
            let directory = curveDir ?? options.curveDirectory(settings, common)
            let made = try PlaneSecurity.generate(in: directory, owners: owned)
            print("CURVE keys in \(directory): made \(made.isEmpty ? "none (all there)" : made.map(\.rawValue).joined(separator: ", "))")
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

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve signatures and key wrapping to udpchat-edge (the default).")

    @OptionGroup var options: KeysOptions
    @Flag(help: "Generate the keys first if there are none (containers' first start); never replaces a key.")
    var generateIfMissing = false

    func run() async throws {
        try await ProgramRunner("udpchat-keys", metricsPort: .keysMetricsPort).run { program in try await serve(program) }
    }

    private func serve(_ program: ProgramRunner.Context) async throws -> ProgramRunner.Serving {
        let (settings, common, logger) = (program.settings, program.common, program.logger)
        let files = options.files(common)
        if generateIfMissing && !files.identityExists {
            let size = try rsaKeySize(settings.int(.keyBits), named: "KEY_BITS")
            try files.writeIdentity(try _RSA.Signing.PrivateKey(keySize: size), force: false)
            try files.ensureKeyEncryptionKey()
            logger.notice("generated a new identity key", metadata: .fields(.path(files.directory.path)))
        }
        let service = KeyService(identity: try files.loadIdentity(), wrap: try files.loadKeyEncryptionKey(), logger: logger)
        try SocketDirectory.prepare(binding: [common.keysBind])
        var plane = common
        plane.curveDir = options.curveDirectory(settings, common)
        let reactor = ZMQReactor(context: ZMQContext(security: try plane.planeSecurity(for: .keys)), name: "keys-zmq")
        _ = try RPCServer(reactor: reactor, endpoint: common.keysBind, logger: logger, requestType: IPCKeysRequest.self) {
            service.handle($0)
        }
        let ops = try await program.startOps { OpsServer.readiness([("identity key", true)]) }
        logger.info("serving", metadata: .fields(.address(common.keysBind), .value("fingerprint", service.fingerprint)))
        return .init(
            ready: "endpoint=\(common.keysBind) fingerprint=\(service.fingerprint)", services: [ReactorService(reactor: reactor, ops: ops)])
    }
}
