/// Why a remote call did not produce a reply.
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure; extensible.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// No reply before the deadline: the peer is down, slow or unreachable.
        public static let timeout = Code("timeout")
        /// The peer answered that it failed to handle the request.
        public static let remote = Code("remote")
        /// The peer is at its limit of requests in flight.
        public static let overloaded = Code("overloaded")
        /// A reply or request that does not parse.
        public static let malformed = Code("malformed")
        /// This process is shutting down.
        public static let shutdown = Code("shutdown")
    }

    public var code: Code
    /// What happened, for logs and for operators.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
