import AsyncHTTPClient
import ChatWire
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// How long one model call may take.
struct CallLimits: Sendable {
    /// Until the first piece of text arrives.
    var firstToken: Duration
    /// For the whole reply.
    var total: Duration
}

/// A language model behind an HTTP API that streams its reply.
protocol ChatModel: Sendable {
    /// For logs and the ready line: provider, model and URL.
    var summary: String { get }
    /// The model's reply to `messages`, read as it streams.
    func reply(to messages: [ChatMessage], limits: CallLimits) async throws(AIFailure) -> String
}

/// Turns a streamed response body into pieces of reply text.
protocol ReplyDecoder: Sendable {
    mutating func feed(_ bytes: ByteBuffer) throws(AIFailure) -> [String]
    /// The stream said it is complete (`data: [DONE]`, `"done": true`).
    var finished: Bool { get }
}

/// One streamed HTTP call with a first-token deadline and a total deadline.
/// A connection that is refused fails at once; a body that ends before the
/// decoder saw the end is a cut-off reply, never a short one.
struct StreamingCall: Sendable {
    let client: HTTPClient
    let url: String
    let headers: [(String, String)]
    let body: [UInt8]

    func run<Decoder: ReplyDecoder>(_ decoder: Decoder, limits: CallLimits) async throws(AIFailure) -> String {
        let started = ContinuousClock.now
        let sawText = Flag()
        do {
            return try await withThrowingTaskGroup(of: String?.self) { group in
                group.addTask { try await self.read(decoder, deadline: started + limits.total, sawText: sawText) }
                group.addTask {
                    try await Task.sleep(until: started + limits.firstToken)
                    if !sawText.isSet { throw AIFailure.firstTokenLate(limits.firstToken) }
                    try await Task.sleep(until: started + limits.total)
                    throw AIFailure.tooSlow(limits.total)
                }
                defer { group.cancelAll() }
                while let result = try await group.next() {
                    if let text = result { return text }
                }
                throw AIFailure.cutOff
            }
        } catch let failure as AIFailure {
            throw failure
        } catch {
            throw AIFailure.unreachable(url, "\(error)")
        }
    }

    private func read<Decoder: ReplyDecoder>(_ decoder: Decoder, deadline: ContinuousClock.Instant, sawText: Flag) async throws
        -> String?
    {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream, application/x-ndjson")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let remaining = ContinuousClock.now.duration(to: deadline)
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .nanoseconds(Int64(remaining.nanoseconds)))
        } catch {
            throw Self.connectionFailure(error, url: url)
        }
        guard response.status == .ok else {
            let body = (try? await response.body.collect(upTo: 16_384)).map { String(buffer: $0) } ?? ""
            throw AIFailure.http(status: Int(response.status.code), reason: response.status.reasonPhrase, detail: Self.errorDetail(body))
        }
        var decoder = decoder
        var text = ""
        do {
            for try await chunk in response.body {
                for piece in try decoder.feed(chunk) where !piece.isEmpty {
                    sawText.set()
                    text += piece
                }
                if decoder.finished { return text }
            }
        } catch let failure as AIFailure {
            throw failure
        } catch is CancellationError {
            return nil
        } catch {
            throw AIFailure.cutOff
        }
        throw AIFailure.cutOff
    }

    /// A refused or unreachable connection, said plainly.
    static func connectionFailure(_ error: any Error, url: String) -> AIFailure {
        if let error = error as? HTTPClientError, error == .connectTimeout {
            return .unreachable(url, "no connection within the connect timeout")
        }
        let text = String(describing: error)
        if text.contains("refused") || text.contains("ECONNREFUSED") || text.contains("errno: 111") {
            return .unreachable(url, "connection refused")
        }
        return .unreachable(url, text)
    }

    /// The message inside an error body: OpenAI's `{"error": {"message"}}`,
    /// Ollama's `{"error": "..."}`, or the start of the text.
    static func errorDetail(_ body: String) -> String {
        if let object = try? JSONParser.parse(body).objectValue {
            if let message = object["error"]?.objectValue?["message"]?.stringValue { return ProtocolText.echo(message) }
            if let message = object["error"]?.stringValue { return ProtocolText.echo(message) }
        }
        return ProtocolText.echo(TextRules.trimmed(body))
    }
}

/// A flag set once, read from another task.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

extension ChatMessage {
    var json: JSONValue { ["role": .string(role.rawValue), "content": .string(content)] }
}
