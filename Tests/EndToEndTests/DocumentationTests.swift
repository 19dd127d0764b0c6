import Foundation
import Testing

/// Every document the sources cite is in the repository, and so is the
/// part they cite: a section number of `docs/protocol.md`, a heading of
/// `docs/architecture.md`.
@Suite struct DocumentationTests {
    static let repository = OperationsTests.repository
    /// Where citations live: code, tests, scripts, deployment files, protos.
    static let cited = ["Sources", "Tests", "scripts", "deploy", "Protos", ".ci"]
    static let extensions: Set<String> = ["swift", "py", "sh", "proto", "yaml", "service", "js", "html", ""]

    /// Each file's comment text, its comment markers removed and its lines
    /// joined, so that a citation broken over two lines reads as one.
    static func sources() throws -> [(path: String, text: String)] {
        var files: [(String, String)] = []
        for top in cited {
            let root = repository.appendingPathComponent(top)
            guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { continue }
            for case let url as URL in walker where extensions.contains(url.pathExtension) {
                guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true,
                    let text = try? String(contentsOf: url, encoding: .utf8)
                else { continue }
                let joined = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                    var line = Substring(line).drop { $0 == " " }
                    for marker in ["///", "//", "#", "*"] where line.hasPrefix(marker) {
                        line = line.dropFirst(marker.count)
                        break
                    }
                    return line.trimmingCharacters(in: .whitespaces)
                }.joined(separator: " ")
                files.append((String(url.path.dropFirst(repository.path.count + 1)), joined))
            }
        }
        return files
    }

    static func matches(_ pattern: String, in text: String) throws -> [[String]] {
        let expression = try NSRegularExpression(pattern: pattern)
        let range = NSRange(text.startIndex..., in: text)
        return expression.matches(in: text, range: range).map { match in
            (0..<match.numberOfRanges).map { index in
                Range(match.range(at: index), in: text).map { String(text[$0]) } ?? ""
            }
        }
    }

    /// Headings of a document, whitespace folded.
    static func headings(_ document: String) throws -> [String] {
        let text = try String(contentsOf: repository.appendingPathComponent(document), encoding: .utf8)
        return text.split(separator: "\n").filter { $0.hasPrefix("#") }.map {
            $0.drop { $0 == "#" }.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
    }

    @Test func everyCitedDocumentAndPartExists() throws {
        let files = try Self.sources()
        #expect(files.count > 100, "found \(files.count) files to read")
        let protocolHeadings = try Self.headings("docs/protocol.md")
        let architectureHeadings = try Self.headings("docs/architecture.md").map { $0.lowercased() }
        var citations = 0
        for (path, text) in files {
            // Documents that are not in the repository.
            for old in try Self.matches(#"\b(PROTOCOL|ARCHITECTURE|STYLE|TOOLCHAIN)\.md"#, in: text) {
                Issue.record("\(path) cites \(old[0]), which is not in the repository")
            }
            for document in try Self.matches(#"\bdocs/([a-z-]+\.md)"#, in: text) {
                citations += 1
                #expect(
                    FileManager.default.fileExists(atPath: Self.repository.appendingPathComponent("docs/" + document[1]).path),
                    "\(path) cites docs/\(document[1])")
            }
            // Sections of docs/protocol.md: one, a list, a range, an appendix.
            for cite in try Self.matches(#"docs/protocol\.md,?((?:\s*(?:§[0-9]+(?:\.[0-9]+)?|Appendix [A-Z]|and|-|,))+)"#, in: text) {
                for section in try Self.matches(#"§([0-9]+(?:\.[0-9]+)?)|Appendix ([A-Z])"#, in: cite[1]) {
                    let wanted = section[1].isEmpty ? "Appendix \(section[2])" : section[1] + " "
                    #expect(
                        protocolHeadings.contains { $0.hasPrefix(wanted) || $0.hasPrefix(wanted.trimmingCharacters(in: .whitespaces) + ".") },
                        "\(path) cites docs/protocol.md \(section[0]), which has no such section")
                }
            }
            // A heading of docs/architecture.md, quoted (perhaps in part).
            for cite in try Self.matches(#"docs/architecture\.md(?:,\s*|\s+)"([^"]+)""#, in: text) {
                let wanted = cite[1].split(whereSeparator: \.isWhitespace).joined(separator: " ").lowercased()
                #expect(
                    architectureHeadings.contains { $0.contains(wanted) },
                    "\(path) cites docs/architecture.md \"\(cite[1])\", which has no such heading")
            }
        }
        #expect(citations > 50, "found \(citations) citations of docs/")
    }
}
