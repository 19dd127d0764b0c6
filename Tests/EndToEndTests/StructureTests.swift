import Foundation
import Testing

/// The floors of the package hold: the wire and the state machines do no
/// I/O, the client links no ZeroMQ, and no source file grows past what one
/// reading takes in.
@Suite struct StructureTests {
    /// Modules that do I/O or run a program: sockets, ZeroMQ, databases,
    /// HTTP, the program runner.
    static let io = ["NIO*", "CZeroMQ", "IPC", "Ops", "AsyncHTTPClient", "PostgresNIO", "GRDB", "ServiceLifecycle"]

    /// Each floor and what it must not import: a module by its name, or
    /// every module whose name starts with what precedes a `*`.
    static let floors: [(paths: [String], forbidden: [String], least: Int)] = [
        // Codecs, the v1 wire's crypto, the session rules: no logging and no IPC messages either.
        (["Sources/ChatWire"], io + ["IPCMessages", "Logging", "SwiftProtobuf"], 15),
        (["Sources/IPCMessages"], io + ["Logging"], 2),
        // The state machines: events and time in, actions out.
        (
            ["Sources/udpchat-edge/Machine", "Sources/udpchat-edge/Delivery", "Sources/udpchat-store/JobQueue.swift",
             "Sources/udpchat-store/GroupCommit.swift"], io, 15
        ),
    ]

    static func imports(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { line in
            let words = line.split(whereSeparator: \.isWhitespace).filter { !$0.hasPrefix("@") }
            guard words.first == "import", words.count > 1 else { return nil }
            return String(words[words.count - 1])
        }
    }

    static func matches(_ module: String, _ name: String) -> Bool {
        name.hasSuffix("*") ? module.hasPrefix(name.dropLast()) : module == name
    }

    /// Every .swift file under `path` (or `path` itself), with its text.
    static func swiftFiles(_ path: String) throws -> [(path: String, text: String)] {
        let url = OperationsTests.repository.appendingPathComponent(path)
        if url.pathExtension == "swift" { return [(path, try String(contentsOf: url, encoding: .utf8))] }
        let walker = try #require(FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil))
        var files: [(String, String)] = []
        for case let file as URL in walker where file.pathExtension == "swift" {
            files.append((path + file.path.dropFirst(url.path.count), try String(contentsOf: file, encoding: .utf8)))
        }
        return files
    }

    @Test func theWireAndTheMachinesImportNoInputOrOutput() throws {
        for floor in Self.floors {
            let files = try floor.paths.flatMap(Self.swiftFiles)
            #expect(files.count >= floor.least, "read \(files.count) files under \(floor.paths)")
            for file in files {
                for module in Self.imports(file.text) {
                    #expect(!floor.forbidden.contains { Self.matches(module, $0) }, "\(file.path) imports \(module)")
                }
            }
        }
        // The rule sees an import where there is one.
        #expect(Self.imports("import ChatWire\n@preconcurrency import NIOCore\n").contains { Self.matches($0, "NIO*") })
        #expect(!Self.matches("IPCMessages", "IPC") && Self.matches("IPC", "IPC"))
    }

    /// Log messages say what happened in fixed words; the values go in
    /// typed metadata (`LogField`), so a collector can filter by them.
    @Test func noLogMessageCarriesAValueInItsText() throws {
        let call = try NSRegularExpression(
            pattern: #"(?:[lL]ogger|Logger\([^)]*\))\.(trace|debug|info|notice|warning|error|critical)\(\s*"((?:[^"\\]|\\.)*)""#)
        var messages = 0
        for file in try Self.swiftFiles("Sources") {
            let text = file.text as NSString
            for match in call.matches(in: file.text, range: NSRange(location: 0, length: text.length)) {
                messages += 1
                let message = text.substring(with: match.range(at: 2))
                #expect(!message.contains("\\("), "\(file.path): \(message)")
            }
        }
        #expect(messages >= 60, "read \(messages) log messages")
        // The rule sees a value where there is one.
        for sample in [#"logger.info("took \(n) jobs")"#, #"Logger(label: "x").error("took \(n) jobs")"#, "self.logger.warning(\n    \"took \\(n) jobs\")"] {
            let found = call.firstMatch(in: sample, range: NSRange(location: 0, length: sample.utf16.count))
            #expect(found.map { (sample as NSString).substring(with: $0.range(at: 2)) } == #"took \(n) jobs"#, "\(sample)")
        }
    }

    /// Implementation constant: the longest hand-written source file.
    static let longestFile = 400

    @Test func noHandWrittenSourceFileIsLongerThanOneReading() throws {
        let files = try ["Sources", "Tests"].flatMap(Self.swiftFiles).filter { !$0.path.contains("/Generated/") }
        #expect(files.count >= 150, "read \(files.count) files")
        for file in files {
            let lines = file.text.split(separator: "\n", omittingEmptySubsequences: false).count - 1
            #expect(lines <= Self.longestFile, "\(file.path) has \(lines) lines")
        }
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
