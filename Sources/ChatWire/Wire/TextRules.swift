/// Text rules shared by the server and clients (docs/protocol.md §5.0, §5.3).
public enum TextRules {
    /// `text` without leading and trailing whitespace, as Python's `str.strip()`.
    public static func trimmed(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[first...last])
    }

    /// `text` safe to write to a terminal: control characters (C0, DEL, C1:
    /// escape sequences among them) and the bidirectional overrides that
    /// reorder what is shown become U+FFFD, line breaks and tabs a space,
    /// so that another member's name or message cannot move the cursor,
    /// recolour the screen or fake a line of its own.
    public static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnprintable) else { return text }
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar == "\n" || scalar == "\r" || scalar == "\t" {
                scalars.append(" ")
            } else if isUnprintable(scalar) {
                scalars.append("\u{FFFD}")
            } else {
                scalars.append(scalar)
            }
        }
        return String(scalars)
    }

    private static func isUnprintable(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: return true  // C0, DEL, C1
        case 0x202A...0x202E, 0x2066...0x2069: return true  // bidirectional embeddings, overrides, isolates
        default: return false
        }
    }

    /// Whether `email` fully matches the original's pattern
    /// `^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$`.
    ///
    /// The domain may contain dots, so the only split that can satisfy the
    /// final `\.[a-zA-Z]{2,}` is at its last dot.
    public static func isValidEmail(_ email: String) -> Bool {
        let bytes = Array(email.utf8)
        guard let at = bytes.firstIndex(of: UInt8(ascii: "@")), at > 0 else { return false }
        let local = bytes[..<at], domain = bytes[(at + 1)...]
        guard local.allSatisfy(isLocalCharacter), domain.allSatisfy(isDomainCharacter) else { return false }
        guard let dot = domain.lastIndex(of: UInt8(ascii: ".")), dot > domain.startIndex else { return false }
        let topLevel = domain[(dot + 1)...]
        return topLevel.count >= 2 && topLevel.allSatisfy(isLetter)
    }

    /// The display name the original gives a new user: the part of the
    /// email before the first `@`.
    public static func defaultName(forEmail email: String) -> String {
        String(email.prefix { $0 != "@" })
    }

    private static func isLetter(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    private static func isLocalCharacter(_ c: UInt8) -> Bool {
        isLetter(c) || isDigit(c) || "._%+-".utf8.contains(c)
    }

    private static func isDomainCharacter(_ c: UInt8) -> Bool {
        isLetter(c) || isDigit(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-")
    }
}
