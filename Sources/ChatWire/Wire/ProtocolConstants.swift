/// Values fixed by the wire protocol. Changing one breaks existing clients.
public enum WireSpec {
    /// docs/protocol.md §1.1: default UDP port of the original server.
    public static let defaultPort = 9999
    /// docs/protocol.md §10.1: the original receive buffer; requests up to this size must work.
    public static let defaultBufferSize = 8192
    /// docs/protocol.md §1.1: the largest UDP payload over IPv4.
    public static let maxDatagram = 65_507
    /// docs/protocol.md §3.1: AES-256-GCM.
    public static let sessionKeyBytes = 32
    /// docs/protocol.md §3.1: 96-bit IV.
    public static let nonceBytes = 12
    /// docs/protocol.md §3.1: 128-bit tag appended to the ciphertext.
    public static let tagBytes = 16
    /// docs/protocol.md §2.2: the web client verifies with a fixed salt of 32 bytes.
    public static let pssSaltBytes = 32
    /// docs/protocol.md §1.3: 128 random bits as 32 hex characters.
    public static let idBytes = 16
    /// docs/protocol.md §5.13: history returns the 100 newest messages.
    public static let historyLimit = 100
    /// docs/protocol.md §6.2: retransmit every 2 s, 5 transmissions in all.
    public static let retryIntervalSeconds = 2.0
    public static let transmissions = 5
}

/// Every text the protocol puts on the wire, spelled exactly as the original
/// server spells it (docs/protocol.md §4 and §5). Clients show some of them.
public enum ProtocolText {
    // SERVER_ERROR (docs/protocol.md §4.1)
    public static let packetFailurePrefix = "Packet processing failure: "
    public static let invalidMessageFormat = "Invalid message format"
    public static func unknownMessageType(_ type: String) -> String { "Unknown message type '\(type)'" }
    public static let missingClientKey = "Missing client's public key"
    public static let incompleteMessage = "Message format is incomplete"
    public static func sessionNotFound(_ id: String) -> String { "Session ID '\(id)' not found" }
    public static let nonceReused = "This nonce was already used"
    public static let decryptionFailed = "Message decryption failed: Invalid key or message."

    // Inner ERROR (docs/protocol.md §4.2)
    public static func unknownPacketType(_ type: String) -> String { "Unknown packet type: \(type)" }
    public static let invalidEmail = "Please provide a valid email address"
    public static let notLoggedIn = "You are not logged in."
    public static let invalidSession = "Invalid session ID"
    public static let authenticationRequired = "Authentication required."
    public static let roomNameRequired = "Room name is required."
    public static let roomNameTaken = "Room with that name already exists."
    public static let roomIdRequired = "Room ID is required."
    public static let roomIdAndContentRequired = "Room ID and content are required."
    public static let roomNotFound = "Room not found."
    public static let userNotFound = "User not found."
    public static let notAMember = "You are not a member of this room."
    public static let joinBeforeSending = "You must join the room before sending messages."
    public static let joinBeforeAI = "You must join the room to request AI messages."
    public static let invalidAIMode = "Invalid AI mode configured."
    public static func aiFailed(_ reason: String) -> String { "AI generation failed: \(reason)" }

    // Other fixed texts (docs/protocol.md §5)
    public static let helloMessage = "Welcome to UDPChat-AI."
    public static let pleaseTypePassword = "Please type your password to continue"
    public static let incorrectPassword = "Incorrect password"

    // Texts of this server's own limits (the original had none).
    /// Over `MESSAGES_PER_USER` (the edge's flow control).
    public static let tooManyMessages = "You are sending messages too fast; wait a moment and send it again."

    /// Attacker-chosen text echoed in an error is cut to this many characters,
    /// so an error reply stays small whatever the request carried.
    public static let echoLimit = 64

    /// `text` cut to ``echoLimit`` characters, with an ellipsis when cut.
    public static func echo(_ text: String) -> String {
        guard text.count > echoLimit else { return text }
        return String(text.prefix(echoLimit)) + "…"
    }
}
