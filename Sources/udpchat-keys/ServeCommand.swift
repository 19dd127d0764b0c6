import ArgumentParser
import CLibCrypto
import CryptoExtras
import Foundation
import IPC
import IPCMessages
import Ops

struct Serve: AsyncParsableCommand {
    /// Implementation constant: handshakes that may wait for each signing
    /// thread; beyond them a handshake is answered "busy" at once. As many
    /// as one edge lets through at once (512), about 0.13 s of signing with
    /// OpenSSL here, well inside a caller's deadline.
    static let waitingPerThread = 512
    /// Implementation constant: the signing threads' niceness. Under a
    /// flood of handshakes they take every core they can; at 10 they yield
    /// to the threads that answer requests, here and in the edge and store
    /// on the same machine, and still have the cores when nothing else runs.
    static let signingNiceness: Int32 = 10

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
        let identity = try files.loadIdentity()
        let library = settings.string(.rsaLibrary, default: "openssl")
        // The signing threads are never joined: OpenSSL must not free its
        // state at exit under one that is still signing.
        OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
        let service = KeyService(
            identity: identity, signer: try handshakeSigner(library, identity: identity), wrap: try files.loadKeyEncryptionKey(),
            logger: logger)
        try SocketDirectory.prepare(binding: [common.keysBind])
        var plane = common
        plane.curveDir = options.curveDirectory(settings, common)
        let reactor = ZMQReactor(context: ZMQContext(security: try plane.planeSecurity(for: .keys)), name: "keys-zmq")
        let configured = try settings.int(.keysThreads)
        let threads = configured == 0 ? ProcessInfo.processInfo.activeProcessorCount : configured
        let pool = ThreadPool(name: "udpchat-signing", threads: threads, maximumWaiting: Self.waitingPerThread * threads, niceness: Self.signingNiceness)
        _ = try RPCServer(reactor: reactor, endpoint: common.keysBind, logger: logger) { body, reply in
            do {
                let request = try IPCKeysRequest(serializedBytes: body)
                service.respond(to: request, signingOn: pool) { response in reply(Result { try response.serializedBytes() }) }
            } catch {
                reply(.failure(error))
            }
        }
        let ops = try await program.startOps { OpsServer.readiness([("identity key", true)]) }
        logger.info(
            "serving",
            metadata: .fields(
                .address(common.keysBind), .value("fingerprint", service.fingerprint), .value("rsa", library),
                .value("threads", "\(threads)")))
        return .init(
            ready: "endpoint=\(common.keysBind) fingerprint=\(service.fingerprint)", services: [ReactorService(reactor: reactor, ops: ops)])
    }
}
