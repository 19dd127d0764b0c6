import ChatWire

/// Why a remote call did not produce a reply: a ``ChatError`` with one of
/// the codes below.
public typealias RPCError = ChatError

extension ChatError.Code {
    /// No reply before the deadline: the peer is down, slow or unreachable.
    public static let timeout = ChatError.Code("timeout")
    /// The peer answered that it failed to handle the request.
    public static let remote = ChatError.Code("remote")
    /// The peer is at its limit of requests in flight.
    public static let overloaded = ChatError.Code("overloaded")
    /// A reply or request that does not parse.
    public static let malformed = ChatError.Code("malformed")
    /// This process is shutting down.
    public static let shutdown = ChatError.Code("shutdown")
    /// udpchat-keys could not use a client's RSA key (a handshake's `client_key`).
    public static let invalidClientKey = ChatError.Code("invalid_client_key")
    /// The service has as much of this work waiting as it takes: try again.
    public static let busy = ChatError.Code("busy")
    /// udpchat-keys failed to sign.
    public static let signingFailed = ChatError.Code("signing_failed")
    /// A wrapped session key that the key-encryption key did not make for that session.
    public static let unwrapFailed = ChatError.Code("unwrap_failed")
    /// A request the service cannot carry out as asked.
    public static let invalidRequest = ChatError.Code("invalid_request")
}

/// A failure one program reports to another: its code travels by name.
extension IPCFailure {
    public init(_ error: ChatError) {
        self.init()
        code = error.code.name
        message = error.message
    }

    public var error: ChatError { ChatError(ChatError.Code(code), message) }
}
