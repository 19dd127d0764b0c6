import Common
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

    @Test func defaultNameIsTheLocalPart() {
        #expect(TextRules.defaultName(forEmail: "alice@example.com") == "alice")
    }
}
