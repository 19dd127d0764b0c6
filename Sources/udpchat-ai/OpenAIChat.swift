import AsyncHTTPClient
import ChatWire
import NIOCore

/// OpenAI chat completions, streamed as server-sent events: OpenAI itself,
/// any OpenAI-compatible server (by base URL), or Azure OpenAI (by endpoint,
/// deployment and api-version, with an `api-key` header).
struct OpenAIChat: ChatModel {
    enum Dialect: Sendable {
        case openAI(baseURL: String, apiKey: String)
        case azure(endpoint: String, deployment: String, apiVersion: String, apiKey: String)
    }

    let client: HTTPClient
    let dialect: Dialect
    let model: String
    let sampling: Sampling

    var url: String {
        switch dialect {
        case .openAI(let baseURL, _):
            return Self.trimmedSlash(baseURL) + "/chat/completions"
        case .azure(let endpoint, let deployment, let apiVersion, _):
            return Self.trimmedSlash(endpoint) + "/openai/deployments/\(deployment)/chat/completions?api-version=\(apiVersion)"
        }
    }

    var summary: String {
        switch dialect {
        case .openAI: return "openai model=\(model) url=\(url)"
        case .azure(_, let deployment, _, _): return "azure deployment=\(deployment) url=\(url)"
        }
    }

    /// The request body: the later original revision's parameters, streamed.
    func body(for messages: [ChatMessage]) -> [UInt8] {
        let object: JSONValue = [
            "model": .string(model), "messages": .array(messages.map(\.json)), "stream": true,
            "temperature": .double(sampling.temperature), "max_tokens": .int(Int64(sampling.maxTokens)),
            "top_p": .double(sampling.topP), "frequency_penalty": .double(sampling.frequencyPenalty),
            "presence_penalty": .double(sampling.presencePenalty),
        ]
        return object.serialized()
    }

    var headers: [(String, String)] {
        switch dialect {
        case .openAI(_, let apiKey): return apiKey.isEmpty ? [] : [("Authorization", "Bearer \(apiKey)")]
        case .azure(_, _, _, let apiKey): return [("api-key", apiKey)]
        }
    }

    func reply(to messages: [ChatMessage], limits: CallLimits) async throws(AIFailure) -> String {
        try await StreamingCall(client: client, url: url, headers: headers, body: body(for: messages))
            .run(Decoder(), limits: limits)
    }

    static func trimmedSlash(_ url: String) -> String {
        var url = url
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }

    /// `data: {"choices":[{"delta":{"content":"…"}}]}` events up to `data: [DONE]`.
    struct Decoder: ReplyDecoder {
        private var parser = ServerSentEventParser()
        private(set) var finished = false

        mutating func feed(_ bytes: ByteBuffer) throws(AIFailure) -> [String] {
            var pieces: [String] = []
            for event in parser.feed(bytes.readableBytesView) where !finished {
                if event.data == "[DONE]" {
                    finished = true
                    break
                }
                let value: JSONValue
                do {
                    value = try JSONParser.parse(event.data)
                } catch {
                    throw AIFailure.malformed("an event is not JSON (\(error))")
                }
                guard let object = value.objectValue else { throw AIFailure.malformed("an event is not a JSON object") }
                if let error = object["error"] {
                    let message = error.objectValue?["message"]?.stringValue ?? error.stringValue ?? error.jsonText
                    throw ChatError.model("the model provider reported an error: \(ProtocolText.echo(message)).")
                }
                // Azure sends events without choices first (content filter results).
                guard let choices = object["choices"]?.arrayValue else { continue }
                for choice in choices {
                    if let content = choice.objectValue?["delta"]?.objectValue?["content"]?.stringValue { pieces.append(content) }
                }
            }
            return pieces
        }
    }
}

/// The sampling parameters sent with every request.
struct Sampling: Sendable {
    var temperature = 0.9
    var maxTokens = 300
    var topP = 0.95
    var frequencyPenalty = 0.3
    var presencePenalty = 0.2
}
