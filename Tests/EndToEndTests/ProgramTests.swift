import ChatClient
import Common
import Foundation
import Testing

/// The command-line programs as a user runs them.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProgramTests {
    /// The fingerprint in `udpchat-keys show` output.
    static func fingerprint(_ output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix("fingerprint:") }?.split(separator: " ").last.map(String.init)
    }

    @Test func clientCommandsSendAndReadHistoryAndPinTheFingerprint() async throws {
        try await withSystem { system in
            let knownHosts = system.root.appendingPathComponent("known_hosts").path
            let server = "127.0.0.1:\(system.port)"
            let base = ["--server", server, "--known-hosts", knownHosts]
            let sent = try system.run("udpchat", ["send"] + base + ["--email", "alice@example.com", "--room", "Ops", "--create", "deploy", "done"])
            #expect(sent.status == 0, "\(sent.output)")
            #expect(sent.output.contains("sent message 1 to Ops"))
            let history = try system.run("udpchat", ["history"] + base + ["--email", "bob@example.com", "--room", "Ops", "--json"])
            #expect(history.status == 0, "\(history.output)")
            let item = try #require(try JSONParser.parse(history.output.trimmingCharacters(in: .whitespacesAndNewlines)).objectValue)
            #expect(item["content"] == "deploy done" && item["name"] == "alice" && item["message_id"] == 1)
            let pinned = try String(contentsOfFile: knownHosts, encoding: .utf8)
            let fingerprint = try #require(Self.fingerprint(try system.run("udpchat-keys", ["show"]).output))
            #expect(pinned.contains("\(server) \(fingerprint)"))

            // A replaced server key is refused with a clear message.
            #expect(try system.run("udpchat-keys", ["generate", "--force"]).status == 0)
            await system.keys.stop()
            let keys = try ProgramProcess(
                name: "keys2", executable: system.binaries.appendingPathComponent("udpchat-keys"), environment: system.environment,
                directory: system.root)
            defer { Task { await keys.stop() } }
            _ = try await keys.waitForLine(startingWith: "udpchat-keys ready")
            let refused = try system.run("udpchat", ["hello"] + base)
            #expect(refused.status != 0)
            #expect(refused.output.contains("was pinned for it on first use"), "\(refused.output)")
            await keys.stop()
        }
    }

    @Test func keysRefuseToOverwriteAndImportKeepsTheFingerprint() async throws {
        try await withSystem { system in
            let refused = try system.run("udpchat-keys", ["generate"])
            #expect(refused.status == 1 && refused.output.contains("--force"))
            let original = try system.run("udpchat-keys", ["show"]).output
            let other = system.root.appendingPathComponent("other-keys").path
            let imported = try system.run(
                "udpchat-keys", ["import", system.root.appendingPathComponent("keys/server_private_key.pem").path, "--dir", other])
            #expect(imported.status == 0, "\(imported.output)")
            let fingerprint = try #require(Self.fingerprint(original))
            #expect(Self.fingerprint(try system.run("udpchat-keys", ["show", "--dir", other]).output) == fingerprint)
            let attributes = try FileManager.default.attributesOfItem(atPath: other + "/server_private_key.pem")
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            #expect(try system.run("udpchat-keys", ["generate", "--bits", "1000", "--dir", other + "2"]).status == 1)
        }
    }

    @Test func storeMigrateReportsTheSchema() async throws {
        try await withSystem { system in
            let result = try system.run("udpchat-store", ["migrate"])
            #expect(result.status == 0 && result.output.contains("0001_initial"), "\(result.output)")
        }
    }

    @Test func badSettingsStopAProgramWithAClearError() async throws {
        try await withSystem { system in
            let result = try system.run("udpchat-edge", [], environment: ["SERVER_PORT": "70000"])
            #expect(result.status != 0 && result.output.contains("SERVER_PORT=70000"), "\(result.output)")
            let keysMissing = try system.run("udpchat-keys", ["show", "--dir", system.root.appendingPathComponent("none").path])
            #expect(keysMissing.status != 0 && keysMissing.output.contains("udpchat-keys generate"))
        }
    }
}
