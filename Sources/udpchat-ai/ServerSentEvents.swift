import ChatWire

/// One server-sent event (the `data:` lines joined with newlines).
struct ServerSentEvent: Equatable, Sendable {
    var event: String?
    var data: String
}

/// An incremental parser for `text/event-stream` (the WHATWG rules OpenAI
/// and Azure stream with): bytes arrive in arbitrary pieces, split anywhere
/// (inside a line, between CR and LF), and complete events come out. Pure.
struct ServerSentEventParser {
    private var line: [UInt8] = []
    private var afterCR = false
    private var data: [String] = []
    private var event: String?

    /// Feeds the next bytes; returns the events they complete.
    mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [ServerSentEvent] where Bytes.Element == UInt8 {
        var events: [ServerSentEvent] = []
        for byte in bytes {
            if afterCR {
                afterCR = false
                if byte == 0x0a { continue }  // the LF of a CRLF
            }
            switch byte {
            case 0x0d:
                afterCR = true
                endLine(into: &events)
            case 0x0a:
                endLine(into: &events)
            default:
                line.append(byte)
            }
        }
        return events
    }

    /// Whether bytes of an unfinished event are waiting (a stream that ends
    /// here was cut off mid-event).
    var hasPartialEvent: Bool { !line.isEmpty || !data.isEmpty }

    private mutating func endLine(into events: inout [ServerSentEvent]) {
        defer { line.removeAll(keepingCapacity: true) }
        guard !line.isEmpty else {
            if !data.isEmpty { events.append(ServerSentEvent(event: event, data: data.joined(separator: "\n"))) }
            data.removeAll()
            event = nil
            return
        }
        if line.first == UInt8(ascii: ":") { return }  // a comment
        let text = String(decoding: line, as: UTF8.self)
        let field: Substring
        var value: Substring
        if let colon = text.firstIndex(of: ":") {
            field = text[..<colon]
            value = text[text.index(after: colon)...]
            if value.first == " " { value = value.dropFirst() }
        } else {
            field = Substring(text)
            value = ""
        }
        switch field {
        case "data": data.append(String(value))
        case "event": event = String(value)
        default: break  // id, retry and unknown fields do not matter here
        }
    }
}

/// An incremental splitter for newline-delimited JSON (Ollama's stream):
/// complete lines come out, whatever the pieces the bytes arrive in. Pure.
struct JSONLinesParser {
    private var line: [UInt8] = []

    /// Feeds bytes; returns each complete, non-empty line's JSON.
    mutating func feed<Bytes: Sequence>(_ bytes: Bytes) throws(AIFailure) -> [JSONValue] where Bytes.Element == UInt8 {
        var values: [JSONValue] = []
        for byte in bytes {
            guard byte == 0x0a else {
                line.append(byte)
                continue
            }
            if let value = try parseLine() { values.append(value) }
        }
        return values
    }

    /// Whether part of a line is waiting (the stream was cut mid-line).
    var hasPartialLine: Bool { line.contains { $0 != 0x20 && $0 != 0x0d && $0 != 0x09 } }

    private mutating func parseLine() throws(AIFailure) -> JSONValue? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.last == 0x0d { line.removeLast() }
        guard line.contains(where: { $0 != 0x20 && $0 != 0x09 }) else { return nil }
        do {
            return try JSONParser.parse(line)
        } catch {
            throw AIFailure.malformed("a line of the stream is not JSON (\(error))")
        }
    }
}
