import ArgumentParser
import ChatWire
import CryptoExtras
import IPC
import Ops

@main
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpchat-keys",
        abstract: "The server's identity key and key-encryption key: set them up, show them, serve them.",
        discussion: "With no subcommand it serves: signatures for handshakes and session-key wrapping for udpchat-edge.",
        subcommands: [Serve.self, Generate.self, Import.self, Rotate.self, Show.self, PlaneKeys.self, RSABench.self],
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
