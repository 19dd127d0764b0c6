/// The binary headers that frame RPCs on the wire (docs/architecture.md,
/// "contracts between processes"). A request is two frames,
/// `[header, body]`: version, request id and the caller's timeout, so the
/// server can drop work nobody waits for any more. A reply is
/// `[header, body]` with the request id and a status.
enum RPCFrame {
    /// Bumped when the framing changes; a peer with another version gets a malformed error.
    static let version: UInt8 = 1

    enum Status: UInt8 {
        case ok = 0
        case failure = 1
        case overloaded = 2
    }

    static func requestHeader(id: UInt64, timeoutMs: UInt32) -> [UInt8] {
        var out: [UInt8] = [version]
        append(id, to: &out)
        append(UInt64(timeoutMs), bytes: 4, to: &out)
        return out
    }

    static func parseRequestHeader(_ header: [UInt8]) -> (id: UInt64, timeoutMs: UInt32)? {
        guard header.count == 13, header[0] == version else { return nil }
        return (read(header, at: 1, bytes: 8), UInt32(read(header, at: 9, bytes: 4)))
    }

    static func replyHeader(id: UInt64, status: Status) -> [UInt8] {
        var out: [UInt8] = [version]
        append(id, to: &out)
        out.append(status.rawValue)
        return out
    }

    static func parseReplyHeader(_ header: [UInt8]) -> (id: UInt64, status: Status)? {
        guard header.count == 10, header[0] == version, let status = Status(rawValue: header[9]) else { return nil }
        return (read(header, at: 1, bytes: 8), status)
    }

    private static func append(_ value: UInt64, bytes: Int = 8, to out: inout [UInt8]) {
        for i in (0..<bytes).reversed() { out.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }

    private static func read(_ bytes: [UInt8], at offset: Int, bytes count: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<count { value = value << 8 | UInt64(bytes[offset + i]) }
        return value
    }
}
