import AsyncHTTPClient
import ChatWire
import NIOCore

/// Ollama's `/api/chat`, streamed as newline-delimited JSON.
struct OllamaChat: ChatModel {
    let client: HTTPClient
    let host: String
    let model: String
    let sampling: Sampling

    var url: String { OpenAIChat.trimmedSlash(host) + "/api/chat" }
    var summary: String { "ollama model=\(model) url=\(url)" }

    /// `OLLAMA_HOST` as the Ollama tools read it: a bare host or host:port
    /// gets http:// and the default port.
    static func normalizedHost(_ value: String) -> String {
        var host = value
        if !host.contains("://") { host = "http://" + host }
        let afterScheme = host.split(separator: "://", maxSplits: 1).last.map(String.init) ?? ""
        let authority = afterScheme.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        if !authority.contains(":") || authority.hasSuffix("]") {
            host = host.replacingOccurrences(of: authority, with: authority + ":11434")
        }
        return host
    }

    func body(for messages: [ChatMessage]) -> [UInt8] {
        let object: JSONValue = [
            "model": .string(model), "messages": .array(messages.map(\.json)), "stream": true,
            "options": [
                "temperature": .double(sampling.temperature), "num_predict": .int(Int64(sampling.maxTokens)),
                "top_p": .double(sampling.topP), "frequency_penalty": .double(sampling.frequencyPenalty),
                "presence_penalty": .double(sampling.presencePenalty),
            ],
        ]
        return object.serialized()
    }

    func reply(to messages: [ChatMessage], limits: CallLimits) async throws(AIFailure) -> String {
        try await StreamingCall(client: client, url: url, headers: [], body: body(for: messages)).run(Decoder(), limits: limits)
    }

    /// `{"message":{"content":"…"},"done":false}` lines up to `"done":true`.
    struct Decoder: ReplyDecoder {
        private var parser = JSONLinesParser()
        private(set) var finished = false

        mutating func feed(_ bytes: ByteBuffer) throws(AIFailure) -> [String] {
            var pieces: [String] = []
            for value in try parser.feed(bytes.readableBytesView) where !finished {
                guard let object = value.objectValue else { throw AIFailure.malformed("a line is not a JSON object") }
                if let error = object["error"] {
                    throw ChatError.model("the model provider reported an error: \(ProtocolText.echo(error.stringValue ?? error.jsonText)).")
                }
                if let content = object["message"]?.objectValue?["content"]?.stringValue { pieces.append(content) }
                if object["done"]?.boolValue == true { finished = true }
            }
            return pieces
        }
    }
}
