import ChatWire

extension ChatError.Code {
    /// No answer in time.
    public static let noAnswer = ChatError.Code("no_answer")
    /// The server answered with a plaintext `SERVER_ERROR`.
    public static let serverError = ChatError.Code("server_error")
    /// The server refused the request with an inner `ERROR`; the message is its text.
    public static let requestRefused = ChatError.Code("request_refused")
    /// The account has a password and none (or an empty one) was given.
    public static let passwordRequired = ChatError.Code("password_required")
    /// The password was wrong.
    public static let unauthorised = ChatError.Code("unauthorised")
    /// The handshake reply failed a check.
    public static let handshake = ChatError.Code("handshake")
    /// The server presents another key than the one pinned on first use.
    public static let fingerprintMismatch = ChatError.Code("fingerprint_mismatch")
    /// An answer of a type the request does not expect.
    public static let unexpectedAnswer = ChatError.Code("unexpected_answer")
    /// The client is not connected or was closed.
    public static let notConnected = ChatError.Code("not_connected")
}

/// Why a client operation failed: a ``ChatError`` with one of the client's
/// codes and words a user can act on.
public enum ChatClientError {
    public static func timeout(_ what: String) -> ChatError { ChatError(.noAnswer, "no answer from the server: \(what)") }
    public static func serverError(_ text: String) -> ChatError { ChatError(.serverError, "server error: \(text)") }
    public static func refused(_ text: String) -> ChatError { ChatError(.requestRefused, text) }
    public static func passwordRequired(email: String) -> ChatError {
        ChatError(.passwordRequired, "\(email) has a password: give it with --password")
    }
    public static func unauthorised(_ text: String) -> ChatError { ChatError(.unauthorised, text) }
    public static func handshake(_ text: String) -> ChatError { ChatError(.handshake, "handshake failed: \(text)") }
    public static func fingerprintMismatch(server: String, pinned: String, presented: String, knownHosts: String) -> ChatError {
        ChatError(
            .fingerprintMismatch,
            """
            the server at \(server) presents the key fingerprint
              \(presented)
            but \(pinned) was pinned for it on first use (in \(knownHosts)).
            Someone may be impersonating the server, or its key was replaced. If you know the key \
            was replaced on purpose, delete the line for \(server) from \(knownHosts) and connect again.
            """)
    }
    public static func unexpected(_ text: String) -> ChatError { ChatError(.unexpectedAnswer, "unexpected answer: \(text)") }
    public static let notConnected = ChatError(.notConnected, "not connected")
}
