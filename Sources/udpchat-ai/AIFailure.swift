import ChatWire

/// Why a job produced no reply, in words for the requester: the store
/// sends them as `AI generation failed: <message>`.
struct AIFailure: Error, Equatable, Sendable, CustomStringConvertible {
    var message: String
    var description: String { message }

    init(_ message: String) { self.message = message }

    static func unreachable(_ url: String, _ reason: String) -> AIFailure {
        AIFailure("cannot reach the model at \(url) (\(reason)).")
    }

    static func http(status: Int, reason: String, detail: String) -> AIFailure {
        let suffix = detail.isEmpty ? "" : ": \(detail)"
        switch status {
        case 429: return AIFailure("the model provider is limiting requests (HTTP 429\(suffix)).")
        case 401, 403: return AIFailure("the model provider refused the credentials (HTTP \(status)\(suffix)).")
        default: return AIFailure("the model provider answered HTTP \(status) \(reason)\(suffix).")
        }
    }

    static func firstTokenLate(_ limit: Duration) -> AIFailure {
        AIFailure("the model sent nothing within \(seconds(limit)).")
    }

    static func tooSlow(_ limit: Duration) -> AIFailure {
        AIFailure("the model did not finish within \(seconds(limit)).")
    }

    static let cutOff = AIFailure("the model's reply was cut off.")
    static let empty = AIFailure("No response received.")

    static func malformed(_ detail: String) -> AIFailure {
        AIFailure("the model's reply could not be read: \(detail).")
    }

    private static func seconds(_ duration: Duration) -> String {
        let milliseconds = duration.milliseconds
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(Double(milliseconds) / 1000) s"
    }
}
