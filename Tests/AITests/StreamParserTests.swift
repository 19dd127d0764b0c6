import ChatWire
import NIOCore
import Testing

@testable import udpchat_ai

@Suite struct ServerSentEventParserTests {
    static let stream =
        ": comment\r\nevent: delta\r\ndata: {\"a\":1}\r\n\r\ndata: line one\ndata: line two\n\ndata:nospace\r\rdata: [DONE]\n\n"
    static let expected = [
        ServerSentEvent(event: "delta", data: "{\"a\":1}"), ServerSentEvent(event: nil, data: "line one\nline two"),
        ServerSentEvent(event: nil, data: "nospace"), ServerSentEvent(event: nil, data: "[DONE]"),
    ]

    @Test func parsesWholeStreams() {
        var parser = ServerSentEventParser()
        #expect(parser.feed(Array(Self.stream.utf8)) == Self.expected)
        #expect(!parser.hasPartialEvent)
    }

    /// Every way of cutting the stream in two gives the same events, CRLF
    /// split between reads included.
    @Test func anySplitGivesTheSameEvents() {
        let bytes = Array(Self.stream.utf8)
        for cut in 0...bytes.count {
            var parser = ServerSentEventParser()
            let events = parser.feed(bytes[..<cut]) + parser.feed(bytes[cut...])
            #expect(events == Self.expected, "cut at \(cut)")
        }
        var byteByByte = ServerSentEventParser()
        #expect(bytes.flatMap { byteByByte.feed([$0]) } == Self.expected)
    }

    @Test func anUnfinishedEventIsNotDispatched() {
        var parser = ServerSentEventParser()
        #expect(parser.feed(Array("data: half".utf8)).isEmpty)
        #expect(parser.hasPartialEvent)
    }
}

@Suite struct JSONLinesParserTests {
    @Test func splitsLinesWhateverThePieces() throws {
        let text = "{\"a\":1}\n\r\n  \n{\"b\":\"x\\ny\"}\r\n{\"c\":3}"
        let bytes = Array(text.utf8)
        for cut in 0...bytes.count {
            var parser = JSONLinesParser()
            let values = try parser.feed(bytes[..<cut]) + parser.feed(bytes[cut...])
            #expect(values == [["a": 1], ["b": "x\ny"]], "cut at \(cut)")
            #expect(parser.hasPartialLine)
        }
    }

    @Test func aLineThatIsNotJSONIsAnError() {
        var parser = JSONLinesParser()
        #expect(throws: AIFailure.self) { try parser.feed(Array("{oops\n".utf8)) }
    }
}

@Suite struct ReplyDecoderTests {
    @Test func openAIDecoderCollectsDeltasUntilDone() throws {
        var decoder = OpenAIChat.Decoder()
        let stream = """
            data: {"choices":[],"prompt_filter_results":[]}

            data: {"choices":[{"delta":{"role":"assistant"}}]}

            data: {"choices":[{"delta":{"content":"Hel"}}]}

            data: {"choices":[{"delta":{"content":"lo"}}]}

            data: [DONE]

            data: {"choices":[{"delta":{"content":"after done"}}]}


            """
        let pieces = try decoder.feed(ByteBuffer(string: stream))
        #expect(pieces.joined() == "Hello" && decoder.finished)
    }

    @Test func openAIErrorsInTheStreamAreFailures() {
        var decoder = OpenAIChat.Decoder()
        #expect(throws: ChatError.model("the model provider reported an error: overloaded.")) {
            try decoder.feed(ByteBuffer(string: "data: {\"error\":{\"message\":\"overloaded\"}}\n\n"))
        }
        var malformed = OpenAIChat.Decoder()
        #expect(throws: AIFailure.self) { try malformed.feed(ByteBuffer(string: "data: {nope\n\n")) }
    }

    @Test func ollamaDecoderCollectsMessagesUntilDone() throws {
        var decoder = OllamaChat.Decoder()
        let stream = """
            {"message":{"role":"assistant","content":"Hi"},"done":false}
            {"message":{"role":"assistant","content":" there"},"done":false}
            {"message":{"role":"assistant","content":""},"done":true}

            """
        #expect(try decoder.feed(ByteBuffer(string: stream)).joined() == "Hi there" && decoder.finished)
        var failing = OllamaChat.Decoder()
        #expect(throws: ChatError.model("the model provider reported an error: model not found.")) {
            try failing.feed(ByteBuffer(string: "{\"error\":\"model not found\"}\n"))
        }
    }

    @Test func ollamaHostIsReadLikeTheOllamaTools() {
        #expect(OllamaChat.normalizedHost("127.0.0.1") == "http://127.0.0.1:11434")
        #expect(OllamaChat.normalizedHost("gpu-box:8080") == "http://gpu-box:8080")
        #expect(OllamaChat.normalizedHost("https://ollama.example.com:443") == "https://ollama.example.com:443")
        #expect(OllamaChat.normalizedHost("http://localhost") == "http://localhost:11434")
    }

    @Test func errorBodiesAreReducedToTheirMessage() {
        #expect(StreamingCall.errorDetail(#"{"error":{"message":"Rate limit reached","type":"x"}}"#) == "Rate limit reached")
        #expect(StreamingCall.errorDetail(#"{"error":"model not found"}"#) == "model not found")
        #expect(StreamingCall.errorDetail("  plain text  ") == "plain text")
    }
}
