/// Lowercase hexadecimal, the encoding of every binary field on the wire
/// (docs/protocol.md §1.3).
///
/// Both directions take concrete types so that the optimiser specialises
/// them across module boundaries (a generic version measured 34× slower).
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`, two characters per byte.
    @inlinable
    public static func encode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { encode($0) }
    }

    /// Lowercase hex of the bytes in `buffer`.
    public static func encode(_ buffer: UnsafeRawBufferPointer) -> String {
        if buffer.isEmpty { return "" }
        return String(unsafeUninitializedCapacity: buffer.count * 2) { out in
            var i = 0
            for byte in buffer {
                out[i] = digits[Int(byte >> 4)]
                out[i + 1] = digits[Int(byte & 0x0f)]
                i += 2
            }
            return i
        }
    }

    /// Appends the lowercase hex of `bytes` to `out`.
    public static func append(_ bytes: [UInt8], to out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: 2 * bytes.count))
        out.withUnsafeMutableBufferPointer { buffer in
            bytes.withUnsafeBufferPointer { source in
                var i = start
                for byte in source {
                    buffer[i] = digits[Int(byte >> 4)]
                    buffer[i + 1] = digits[Int(byte & 0x0f)]
                    i += 2
                }
            }
        }
    }

    /// Decodes lowercase hex. Returns nil for an odd length, an uppercase
    /// letter or any other character: the wire format is lowercase only, and
    /// accepting other spellings of the same bytes is how the original
    /// server's replay table was bypassed (docs/protocol.md §12, item 3).
    public static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { decode(utf8: $0) }
    }

    /// Decodes lowercase hex from UTF-8 code units; see ``decode(_:)``.
    public static func decode(utf8: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard utf8.count % 2 == 0 else { return nil }
        var valid = true
        let out = [UInt8](unsafeUninitializedCapacity: utf8.count / 2) { buffer, count in
            values.withUnsafeBufferPointer { table in
                var i = 0
                while i < utf8.count {
                    let high = table[Int(utf8[i])]
                    let low = table[Int(utf8[i + 1])]
                    // 0xFF marks a byte that is not a lowercase hex digit.
                    if (high | low) & 0xF0 != 0 {
                        valid = false
                        break
                    }
                    buffer[i / 2] = high << 4 | low
                    i += 2
                }
            }
            count = valid ? utf8.count / 2 : 0
        }
        return valid ? out : nil
    }

    /// The value of each byte as a lowercase hex digit; 0xFF for any other byte.
    private static let values: [UInt8] = (0..<256).map { byte in value(UInt8(byte)) ?? 0xFF }

    @inline(__always)
    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c &- UInt8(ascii: "a") &+ 10
        default: return nil
        }
    }
}
