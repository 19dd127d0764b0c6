import ChatWire

/// Why a job produced no reply, in words for the requester: the store
/// sends them as `AI generation failed: <message>`.
typealias AIFailure = ChatError

extension ChatError.Code {
    /// The model produced no usable reply.
    static let model = ChatError.Code("model")
}

extension ChatError {
    /// A reply the model did not give, in words for the requester.
    static func model(_ message: String) -> ChatError { ChatError(.model, message) }

    static func unreachable(_ url: String, _ reason: String) -> ChatError {
        model("cannot reach the model at \(url) (\(reason)).")
    }

    static func http(status: Int, reason: String, detail: String) -> ChatError {
        let suffix = detail.isEmpty ? "" : ": \(detail)"
        switch status {
        case 429: return model("the model provider is limiting requests (HTTP 429\(suffix)).")
        case 401, 403: return model("the model provider refused the credentials (HTTP \(status)\(suffix)).")
        default: return model("the model provider answered HTTP \(status) \(reason)\(suffix).")
        }
    }

    static func firstTokenLate(_ limit: Duration) -> ChatError {
        model("the model sent nothing within \(seconds(limit)).")
    }

    static func tooSlow(_ limit: Duration) -> ChatError {
        model("the model did not finish within \(seconds(limit)).")
    }

    static let cutOff = model("the model's reply was cut off.")
    static let empty = model("No response received.")

    static func malformed(_ detail: String) -> ChatError {
        model("the model's reply could not be read: \(detail).")
    }

    private static func seconds(_ duration: Duration) -> String {
        let milliseconds = duration.milliseconds
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(Double(milliseconds) / 1000) s"
    }
}
