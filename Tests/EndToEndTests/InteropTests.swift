import ChatWire
import Foundation
import Testing

/// The handshake and secure round trips driven by Python's `cryptography`
/// package, an implementation we did not write, exactly as the existing
/// Python clients decrypt and verify.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct InteropTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Interop/python_client.py")

    static func runPython(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await runDetached(URL(fileURLWithPath: "/usr/bin/env"), ["python3", script.path] + arguments)
    }

    @Test(arguments: [2048, 1024])
    func pythonClientCompletesHandshakeAndRoundTrips(keyBits: Int) async throws {
        try await withSystem { system in
            let (status, output) = try await Self.runPython(["127.0.0.1", String(system.port), "--key-bits", String(keyBits)])
            #expect(status == 0, "\(output)")
            let result = try #require(try JSONParser.parse(output.trimmingCharacters(in: .whitespacesAndNewlines)).objectValue)
            #expect(result["ok"] == .bool(true))
            let fingerprint = try #require(result["fingerprint"]?.stringValue)
            #expect(try await system.run("udpchat-keys", ["show"]).output.contains(fingerprint))
        }
    }
}
