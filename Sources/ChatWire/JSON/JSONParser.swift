/// Why a byte string is not the JSON the protocol expects.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong, in words a person can act on.
    public var reason: String
    /// Byte offset into the input where it was noticed.
    public var offset: Int

    public var description: String { "\(reason) at byte \(offset)" }
}

/// A strict RFC 8259 parser for datagram payloads.
///
/// Pure: bytes in, a ``JSONValue`` or a ``JSONParseError`` out. It rejects
/// what Python's `json.loads` rejects (control characters in strings,
/// trailing garbage, invalid UTF-8), bounds nesting so that hostile input
/// cannot exhaust the stack, and never traps.
public struct JSONParser {
    /// Nesting deeper than this is refused. No protocol packet nests deeper
    /// than four levels.
    public static let maximumDepth = 64

    /// Parses one JSON value that fills all of `bytes` (surrounding
    /// whitespace allowed).
    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(buffer)
            return Result { () throws(JSONParseError) -> JSONValue in try parser.parseDocument() }
        }
        return try result.get()
    }

    /// Parses one JSON value from the UTF-8 of `text`.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    private let input: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0

    private init(_ input: UnsafeBufferPointer<UInt8>) { self.input = input }

    private mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard index == input.count else { throw fail("Extra data after the JSON value") }
        return value
    }

    private func fail(_ reason: String) -> JSONParseError {
        JSONParseError(reason: reason, offset: index)
    }

    private mutating func skipWhitespace() {
        while index < input.count {
            switch input[index] {
            case 0x20, 0x09, 0x0a, 0x0d: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard index < input.count else { throw fail("Expecting value") }
        switch input[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("Expecting value")
        }
    }

    private mutating func expectLiteral(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard input.count - index >= count else { throw fail("Expecting value") }
        let start = word.utf8Start
        for i in 0..<count where input[index + i] != start[i] { throw fail("Expecting value") }
        index += count
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw fail("Nesting deeper than \(Self.maximumDepth) levels") }
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        index += 1  // {
        var object = JSONObject()
        skipWhitespace()
        if index < input.count, input[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard index < input.count, input[index] == UInt8(ascii: "\"") else {
                throw fail("Expecting property name enclosed in double quotes")
            }
            let key = try parseString()
            skipWhitespace()
            guard index < input.count, input[index] == UInt8(ascii: ":") else { throw fail("Expecting ':' delimiter") }
            index += 1
            skipWhitespace()
            object.append(key, try parseValue())
            skipWhitespace()
            guard index < input.count else { throw fail("Expecting ',' delimiter") }
            if input[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard input[index] == UInt8(ascii: "}") else { throw fail("Expecting ',' delimiter") }
            index += 1
            depth -= 1
            return .object(object)
        }
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        index += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < input.count, input[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard index < input.count else { throw fail("Expecting ',' delimiter") }
            if input[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard input[index] == UInt8(ascii: "]") else { throw fail("Expecting ',' delimiter") }
            index += 1
            depth -= 1
            return .array(elements)
        }
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: no escapes.
        while index < input.count {
            let c = input[index]
            if c == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: input[start..<index])
                guard let text = String(validating: slice, as: UTF8.self) else {
                    throw JSONParseError(reason: "Invalid UTF-8 in string", offset: start)
                }
                index += 1
                return text
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("Invalid control character in string") }
            index += 1
        }
        var bytes = Array(input[start..<index])
        while index < input.count {
            let c = input[index]
            switch c {
            case UInt8(ascii: "\""):
                guard let text = String(validating: bytes, as: UTF8.self) else {
                    throw JSONParseError(reason: "Invalid UTF-8 in string", offset: start)
                }
                index += 1
                return text
            case UInt8(ascii: "\\"):
                index += 1
                guard index < input.count else { break }
                let escape = input[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): bytes.append(0x22)
                case UInt8(ascii: "\\"): bytes.append(0x5c)
                case UInt8(ascii: "/"): bytes.append(0x2f)
                case UInt8(ascii: "b"): bytes.append(0x08)
                case UInt8(ascii: "f"): bytes.append(0x0c)
                case UInt8(ascii: "n"): bytes.append(0x0a)
                case UInt8(ascii: "r"): bytes.append(0x0d)
                case UInt8(ascii: "t"): bytes.append(0x09)
                case UInt8(ascii: "u"): appendScalar(try parseUnicodeEscape(), to: &bytes)
                default:
                    index -= 1
                    throw fail("Invalid \\escape")
                }
            default:
                if c < 0x20 { throw fail("Invalid control character in string") }
                bytes.append(c)
                index += 1
            }
        }
        throw JSONParseError(reason: "Unterminated string", offset: start - 1)
    }

    private mutating func readHex4() throws(JSONParseError) -> UInt32 {
        guard input.count - index >= 4 else { throw fail("Invalid \\uXXXX escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = input[index]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("Invalid \\uXXXX escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    /// Reads the four digits after `\u`, joining a surrogate pair when one
    /// follows. A lone surrogate becomes U+FFFD, since Swift strings cannot
    /// hold it.
    private mutating func parseUnicodeEscape() throws(JSONParseError) -> Unicode.Scalar {
        let first = try readHex4()
        if (0xD800...0xDBFF).contains(first), input.count - index >= 6,
            input[index] == UInt8(ascii: "\\"), input[index + 1] == UInt8(ascii: "u")
        {
            let save = index
            index += 2
            let second = try readHex4()
            if (0xDC00...0xDFFF).contains(second) {
                let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                return Unicode.Scalar(combined) ?? "\u{FFFD}"
            }
            index = save
        }
        return Unicode.Scalar(first) ?? "\u{FFFD}"
    }

    private func appendScalar(_ scalar: Unicode.Scalar, to bytes: inout [UInt8]) {
        for unit in UTF8.encode(scalar)! { bytes.append(unit) }
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        var isInteger = true
        if input[index] == UInt8(ascii: "-") { index += 1 }
        guard index < input.count, isDigit(input[index]) else { throw fail("Expecting value") }
        if input[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < input.count, isDigit(input[index]) { index += 1 }
        }
        if index < input.count, input[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < input.count, isDigit(input[index]) else { throw fail("Invalid number") }
            while index < input.count, isDigit(input[index]) { index += 1 }
        }
        if index < input.count, input[index] == UInt8(ascii: "e") || input[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < input.count, input[index] == UInt8(ascii: "+") || input[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard index < input.count, isDigit(input[index]) else { throw fail("Invalid number") }
            while index < input.count, isDigit(input[index]) { index += 1 }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: input[start..<index]), as: UTF8.self)
        if isInteger, let value = Int64(text) { return .int(value) }
        guard let value = Double(text), value.isFinite else {
            throw JSONParseError(reason: "Number out of range", offset: start)
        }
        return .double(value)
    }

    @inline(__always)
    private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}
