import ChatWire
import Testing

@Suite struct TextRulesTests {
    @Test(arguments: ["a@b.co", "alice.smith+tag@mail.example.org", "x_y%z-1@sub-domain.a.io", "a@b.c.de"])
    func validEmails(email: String) { #expect(TextRules.isValidEmail(email)) }

    @Test(arguments: ["", "a", "@b.co", "a@", "a@b", "a@b.c", "a@.co", "a@b.c1", "a b@c.de", "a@b@c.de", "ä@b.de", "a@b.co ", "a@b..c"])
    func invalidEmails(email: String) {
        // "a@b..c" fails because the top-level part "c" is one letter.
        #expect(!TextRules.isValidEmail(email))
    }

    @Test func trimsLikePythonStrip() {
        #expect(TextRules.trimmed("  \t hi there \n\u{3000}") == "hi there")
        #expect(TextRules.trimmed(" \n ") == "")
    }

    @Test func whatATerminalShowsCannotBeCommanded() {
        // An escape sequence (clear the screen, recolour), a line of its own, a bidi override.
        #expect(TextRules.printable("hi\u{1B}[2J\u{1B}[31mred") == "hi\u{FFFD}[2J\u{FFFD}[31mred")
        #expect(TextRules.printable("ok\n[12:00] admin: fake") == "ok [12:00] admin: fake")
        #expect(TextRules.printable("abc\u{202E}fed\u{9B}2J\u{7F}") == "abc\u{FFFD}fed\u{FFFD}2J\u{FFFD}")
        // Text without them is unchanged, other scripts and emoji included.
        #expect(TextRules.printable("Grüße, 世界 👋") == "Grüße, 世界 👋")
    }

    @Test func defaultNameIsTheLocalPart() {
        #expect(TextRules.defaultName(forEmail: "alice@example.com") == "alice")
    }
}
