import Foundation
import Testing

/// The floors of the package hold: the wire module does no I/O, and the
/// client links no ZeroMQ.
@Suite struct StructureTests {
    /// Modules the wire and session code must not use: I/O, the programs'
    /// shared module, databases.
    static let forbidden = ["NIO", "CZeroMQ", "Common", "AsyncHTTPClient", "PostgresNIO", "GRDB", "ServiceLifecycle", "Logging"]

    @Test func theWireModuleImportsNoInputOrOutput() throws {
        let root = OperationsTests.repository.appendingPathComponent("Sources/ChatWire")
        let walker = try #require(FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil))
        var files = 0
        for case let url as URL in walker where url.pathExtension == "swift" {
            files += 1
            let text = try String(contentsOf: url, encoding: .utf8)
            for line in text.split(separator: "\n") {
                let words = line.split(whereSeparator: \.isWhitespace).filter { !$0.hasPrefix("@") }
                guard words.first == "import", words.count > 1 else { continue }
                let module = String(words[words.count - 1])
                #expect(
                    !Self.forbidden.contains { module.hasPrefix($0) },
                    "\(url.lastPathComponent) imports \(module)")
            }
        }
        #expect(files >= 15, "read \(files) files")
    }

    @Test func theClientLinksNoZeroMQ() async throws {
        let programs = try TestSystem.binaryDirectory()
        func libraries(_ program: String) async throws -> String {
            let result = try await runDetached(URL(fileURLWithPath: "/usr/bin/ldd"), [programs.appendingPathComponent(program).path])
            #expect(result.status == 0 && result.output.contains("libc.so"), "ldd \(program): \(result.output)")
            return result.output
        }
        #expect(!(try await libraries("udpchat")).contains("libzmq"))
        // The check sees ZeroMQ where it is linked.
        #expect(try await libraries("udpchat-edge").contains("libzmq"))
    }
}
