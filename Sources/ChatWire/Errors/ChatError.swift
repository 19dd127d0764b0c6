/// The one shape of this project's errors: a code a program can branch on
/// and count by, and a message a person can act on. Codes are extensible:
/// each module declares its own (`extension ChatError.Code`), and a code
/// crosses from one program to another by its name (`IPCFailure`).
public struct ChatError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }
    }

    public var code: Code
    /// What happened and, where there is one, what to do about it.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The message: what a person reads. Logs carry the code beside it
    /// (`LogField.error`).
    public var description: String { message }
}

extension ChatError.Code {
    /// A setting or command-line value that cannot work; the message names it.
    public static let configuration = ChatError.Code("configuration")
}

extension ChatError {
    /// A setting or command-line value that cannot work, with what to change.
    public static func configuration(_ message: String) -> ChatError { ChatError(.configuration, message) }
}
