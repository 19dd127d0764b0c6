import ChatWire
import Foundation

/// Reads environment files by the rules that systemd's `EnvironmentFile=`
/// and python-dotenv (which the original server used) have in common, so
/// one file serves the programs, systemd units and containers alike.
///
/// - `KEY=value` per line; blank lines and lines starting with `#` are
///   skipped; an `export ` prefix is allowed; spaces around `=` are dropped.
/// - Unquoted values end at ` #` (an inline comment) and lose trailing spaces.
/// - `'single'` quotes keep their content literally.
/// - `"double"` quotes understand `\"`, `\\`, `\n`, `\t`, `\r` and `\$`, and
///   may span lines.
/// - No `${VAR}` expansion: systemd does not do it, so a file that relied
///   on it would mean different things to different readers.
public enum DotEnv {
    /// A line that is not an assignment, with its line number.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    /// Parses the text of an environment file. A later assignment of the
    /// same name wins.
    public static func parse(_ text: String) throws(ParseError) -> [String: String] {
        var result: [String: String] = [:]
        let chars = Array(text.replacingOccurrences(of: "\r\n", with: "\n"))
        var i = 0
        var line = 1

        func skipSpaces() { while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 } }
        func restOfLineIsEmpty() -> Bool {
            skipSpaces()
            if i < chars.count, chars[i] == "#" { while i < chars.count, chars[i] != "\n" { i += 1 } }
            return i >= chars.count || chars[i] == "\n"
        }

        while i < chars.count {
            skipSpaces()
            if i >= chars.count { break }
            if chars[i] == "\n" {
                i += 1
                line += 1
                continue
            }
            if chars[i] == "#" {
                while i < chars.count, chars[i] != "\n" { i += 1 }
                continue
            }
            // Name, with an optional "export " before it.
            var name = readName(chars, &i)
            if name == "export", i < chars.count, chars[i] == " " || chars[i] == "\t" {
                skipSpaces()
                name = readName(chars, &i)
            }
            guard !name.isEmpty, let first = name.first, first == "_" || first.isLetter else {
                throw ParseError(line: line, reason: "expected NAME=value")
            }
            skipSpaces()
            guard i < chars.count, chars[i] == "=" else {
                throw ParseError(line: line, reason: "expected '=' after \(name)")
            }
            i += 1
            skipSpaces()
            let startLine = line
            var value = ""
            if i < chars.count, let quote = chars[i] == "'" || chars[i] == "\"" ? chars[i] : nil {
                // Single quotes keep every character; double quotes take
                // backslash escapes. Either may span lines.
                i += 1
                while i < chars.count, chars[i] != quote {
                    if quote == "\"", chars[i] == "\\", i + 1 < chars.count {
                        i += 1
                        switch chars[i] {
                        case "n": value.append("\n")
                        case "t": value.append("\t")
                        case "r": value.append("\r")
                        case "\"", "\\", "$", "'": value.append(chars[i])
                        default:
                            value.append("\\")
                            value.append(chars[i])
                        }
                    } else {
                        if chars[i] == "\n" { line += 1 }
                        value.append(chars[i])
                    }
                    i += 1
                }
                guard i < chars.count else { throw ParseError(line: startLine, reason: "unterminated \(quote) quote in \(name)") }
                i += 1
                guard restOfLineIsEmpty() else { throw ParseError(line: line, reason: "text after the closing quote of \(name)") }
            } else {
                while i < chars.count, chars[i] != "\n" {
                    if chars[i] == "#", value.isEmpty || value.last == " " || value.last == "\t" {
                        while i < chars.count, chars[i] != "\n" { i += 1 }
                        break
                    }
                    value.append(chars[i])
                    i += 1
                }
                while let last = value.last, last == " " || last == "\t" { value.removeLast() }
            }
            result[name] = value
        }
        return result
    }

    private static func readName(_ chars: [Character], _ i: inout Int) -> String {
        var name = ""
        while i < chars.count, chars[i] == "_" || chars[i] == "." || chars[i].isLetter || chars[i].isNumber,
            chars[i].isASCII
        {
            name.append(chars[i])
            i += 1
        }
        return name
    }
}
