import ChatWire
import Testing

@Suite struct JSONTests {
    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONParser.parse(
            #" {"s": "a\"b\\c\u00e9\ud83d\ude00", "i": -42, "d": 1.5e2, "t": true, "f": false, "n": null, "a": [1, [2]], "o": {}} "#)
        let object = try #require(value.objectValue)
        #expect(object["s"] == .string("a\"b\\cé😀"))
        #expect(object["i"] == .int(-42))
        #expect(object["d"] == .double(150))
        #expect(object["t"] == .bool(true) && object["f"] == .bool(false) && object["n"] == .null)
        #expect(object["a"] == .array([.int(1), .array([.int(2)])]))
        #expect(object["o"] == .object(JSONObject()))
    }

    @Test func lastDuplicateKeyWinsAsInPython() throws {
        #expect(try JSONParser.parse(#"{"a":1,"a":2}"#).objectValue?["a"] == .int(2))
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "01", "1.", "-", "tru", "nul",
        "\"unterminated", "\"bad \\x escape\"", "\"control \u{01} char\"", "{} {}", "[1] x", "\"\\ud800\\u\"", "1e400", "-1e999",
    ])
    func rejectsInvalidJSON(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xff, 0xfe, 0x22]) }
    }

    @Test func boundsNesting() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let fine = String(repeating: "[", count: 60) + String(repeating: "]", count: 60)
        #expect(throws: Never.self) { try JSONParser.parse(fine) }
    }

    @Test func writesCompactJSONThatParsesBack() throws {
        let value: JSONValue = [
            "type": "MESSAGE", "text": "line\nbreak \"quoted\" tab\t \u{01} é 😀", "n": 7, "x": 0.5, "ok": true, "none": nil,
            "list": [1, "two"],
        ]
        let text = value.jsonText
        #expect(text.hasPrefix(#"{"type":"MESSAGE","text":"line\nbreak \"quoted\" tab\t \u0001 é 😀""#))
        #expect(try JSONParser.parse(text) == value)
    }

    /// Escapes at the ends of a string, side by side, and none at all.
    @Test(arguments: [
        ("", #""""#),
        ("plain", #""plain""#),
        ("\"start", #""\"start""#),
        ("end\\", #""end\\""#),
        ("\r\n", #""\r\n""#),
        ("a\u{1f}\u{7f}b", "\"a\\u001f\u{7f}b\""),
        ("\u{00}", #""\u0000""#),
        ("é\"😀", #""é\"😀""#),
    ])
    func stringsAreEscapedWhereNeeded(text: String, written: String) throws {
        var out: [UInt8] = []
        JSONValue.writeString(text, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == written)
        #expect(try JSONParser.parse(written) == .string(text))
    }

    @Test func loneSurrogateEscapesBecomeReplacementCharacter() throws {
        #expect(try JSONParser.parse(#""\ud800x""#) == .string("\u{FFFD}x"))
    }
}
