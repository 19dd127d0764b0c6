import ChatWire

/// Why a client operation failed, in words a user can act on.
public enum ChatClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No answer in time.
    case timeout(String)
    /// The server answered with a plaintext `SERVER_ERROR`.
    case serverError(String)
    /// The server refused the request with an inner `ERROR`.
    case refused(String)
    /// The account has a password and none (or an empty one) was given.
    case passwordRequired(email: String)
    /// The password was wrong.
    case unauthorised(String)
    /// The handshake reply failed a check.
    case handshake(String)
    /// The server presents another key than the one pinned on first use.
    case fingerprintMismatch(server: String, pinned: String, presented: String, knownHosts: String)
    /// An answer of a type the request does not expect.
    case unexpected(String)
    /// The client is not connected or was closed.
    case notConnected

    public var description: String {
        switch self {
        case .timeout(let what): return "no answer from the server: \(what)"
        case .serverError(let text): return "server error: \(text)"
        case .refused(let text): return text
        case .passwordRequired(let email): return "\(email) has a password: give it with --password"
        case .unauthorised(let text): return text
        case .handshake(let text): return "handshake failed: \(text)"
        case .fingerprintMismatch(let server, let pinned, let presented, let knownHosts):
            return """
                the server at \(server) presents the key fingerprint
                  \(presented)
                but \(pinned) was pinned for it on first use (in \(knownHosts)).
                Someone may be impersonating the server, or its key was replaced. If you know the key \
                was replaced on purpose, delete the line for \(server) from \(knownHosts) and connect again.
                """
        case .unexpected(let text): return "unexpected answer: \(text)"
        case .notConnected: return "not connected"
        }
    }
}
