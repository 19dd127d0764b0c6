import ArgumentParser
import ChatWire
import Crypto
import CryptoExtras
import Foundation
import OpenSSLRSA
import Ops

/// `udpchat-keys bench-rsa`: the RSA operations of a handshake, measured
/// with each library on this machine (docs/performance.md, "RSA"): the
/// server's PSS signature and the OAEP encryption to a client's key, and
/// the client's private-key work (opening the session key),
/// with swift-crypto (BoringSSL) and with the system's OpenSSL, on one
/// thread and on several.
struct RSABench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-rsa",
        abstract: "Measure RSA signing (PSS) and encryption (OAEP) with swift-crypto and with the system OpenSSL.")

    @Option(help: "RSA key size: 2048 or 3072.")
    var bits = 2048
    @Option(help: "Seconds each measurement runs.")
    var seconds = 3.0
    @Option(help: "Threads for the parallel measurements (default: the cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-keys") {
            guard [2048, 3072].contains(bits) else { throw ChatError.configuration("--bits must be 2048 or 3072") }
            guard seconds > 0, seconds <= 600 else { throw ChatError.configuration("--seconds must be above 0 and at most 600") }
            guard (1...256).contains(threads) else { throw ChatError.configuration("--threads must be 1 to 256") }
            let size: _RSA.Signing.KeySize = bits == 2048 ? .bits2048 : .bits3072
            let identity = try _RSA.Signing.PrivateKey(keySize: size)
            let client = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
            // swift-crypto's encryption keys are immutable but not marked Sendable.
            nonisolated(unsafe) let clientKey = client.publicKey
            nonisolated(unsafe) let clientPrivateKey = client
            let openSSLIdentity = try OpenSSLRSAKey(privateKeyDER: [UInt8](identity.derRepresentation))
            let openSSLClient = try OpenSSLRSAKey(publicKeyDER: [UInt8](client.publicKey.derRepresentation))
            let openSSLClientPrivate = try OpenSSLRSAKey(privateKeyDER: [UInt8](client.derRepresentation))
            let message = SessionCipher.random().keyBytes
            let wrapped = try clientKey.encrypt(message, padding: .PKCS1_OAEP_SHA256)
            let operations: [(String, @Sendable () throws -> Void)] = [
                ("PSS sign, RSA-\(bits), swift-crypto", { _ = try identity.signature(for: message, padding: .PSS) }),
                ("PSS sign, RSA-\(bits), OpenSSL", { _ = try openSSLIdentity.signPSS(message) }),
                ("OAEP encrypt to RSA-2048, swift-crypto", { _ = try clientKey.encrypt(message, padding: .PKCS1_OAEP_SHA256) }),
                ("OAEP encrypt to RSA-2048, OpenSSL", { _ = try openSSLClient.encryptOAEP(message) }),
                ("OAEP decrypt, RSA-2048 (client), swift-crypto", { _ = try clientPrivateKey.decrypt(wrapped, padding: .PKCS1_OAEP_SHA256) }),
                ("OAEP decrypt, RSA-2048 (client), OpenSSL", {
                    guard openSSLClientPrivate.decryptOAEP([UInt8](wrapped)) != nil else { throw ChatError(.openSSL, "OAEP decrypt failed") }
                }),
            ]
            print("operation                                       threads     ops/s   ms/op (one thread)")
            for (name, operation) in operations {
                for count in Set([1, threads]).sorted() {
                    let (done, elapsed) = try Self.measure(threads: count, seconds: seconds, operation)
                    let rate = Double(done) / elapsed
                    let perOp = count == 1 ? String(format: "%8.3f", 1000 / rate) : ""
                    print(name.padding(toLength: 48, withPad: " ", startingAt: 0) + String(format: "%7d %9.0f   ", count, rate) + perOp)
                }
            }
        }
    }

    /// Runs `operation` on `threads` threads for `seconds`; how many ran and the seconds taken.
    static func measure(threads: Int, seconds: Double, _ operation: @escaping @Sendable () throws -> Void) throws
        -> (Int, Double)
    {
        let deadline = MonotonicClock.now() + UInt64(seconds * 1e9)
        let counts = MutexBox([Int](repeating: 0, count: threads))
        let failure = MutexBox<(any Error)?>(nil)
        let group = DispatchGroup()
        let started = MonotonicClock.now()
        for index in 0..<threads {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var done = 0
                do {
                    while MonotonicClock.now() < deadline {
                        try operation()
                        done += 1
                    }
                } catch {
                    failure.value = error
                }
                counts.mutate { $0[index] = done }
            }
        }
        group.wait()
        if let error = failure.value { throw error }
        return (counts.value.reduce(0, +), Double(MonotonicClock.now() - started) / 1e9)
    }
}
