import ChatWire
import IPCMessages

/// One chat-completion message.
struct ChatMessage: Equatable, Sendable {
    enum Role: String, Sendable {
        case system, user, assistant
    }

    var role: Role
    var content: String
}

/// The prompt and the reply's clean-up (docs/protocol.md §8.2), written for the
/// later original revision's intent: the model writes as the user,
/// knowledgeable and helpful, and the room's history comes oldest first
/// (the original fed it newest first).
enum Prompt {
    static func messages(for job: IPCAIJob) -> [ChatMessage] {
        let name = job.userName
        let system = """
            You are \(name), taking part in the group chat "\(job.roomName)". You write as \(name) would: \
            knowledgeable, helpful and friendly, in a relaxed conversational tone.
            - Give substance: specific facts, reasons and examples rather than generalities.
            - When someone asks a question, answer it directly.
            - Ask a follow-up question when it moves the conversation on.
            - Keep it as short as the point allows; no filler, no repeating what was said.
            - Write only the message itself: no name prefix, no quotes, no signature.
            """
        var messages = [ChatMessage(role: .system, content: system)]
        for message in job.context {
            messages.append(ChatMessage(role: .user, content: "\(message.name): \(message.content)"))
        }
        let task: String
        if job.draft.isEmpty {
            task = """
                Write the next message \(name) would send in this conversation. Make it useful: informative and \
                specific. Reply with the message text only.
                """
        } else {
            task = """
                \(name) has drafted this message: "\(job.draft)"
                Rewrite it so that it reads naturally, accurately and casually in this conversation, keeping its meaning. \
                Reply with the rewritten message only.
                """
        }
        messages.append(ChatMessage(role: .user, content: task))
        return messages
    }

    /// Trims, strips surrounding quotes, and removes a leading "name:",
    /// "name -" or "name " unless nothing would be left (§8.2).
    static func cleaned(_ reply: String, userName: String) -> String {
        var text = TextRules.trimmed(reply)
        let quotes: Set<Character> = ["\"", "'", "\u{201C}", "\u{201D}", "\u{2018}", "\u{2019}"]
        while let first = text.first, quotes.contains(first) { text.removeFirst() }
        while let last = text.last, quotes.contains(last) { text.removeLast() }
        text = TextRules.trimmed(text)
        let lowered = text.lowercased()
        let name = userName.lowercased()
        guard !name.isEmpty, lowered.hasPrefix(name) else { return text }
        var rest = text.dropFirst(userName.count)
        if rest.hasPrefix(":") {
            rest = rest.dropFirst()
        } else if TextRules.trimmed(String(rest)).hasPrefix("-") {
            rest = Substring(TextRules.trimmed(String(rest)).dropFirst())
        } else if rest.first?.isWhitespace != true {
            return text  // a longer word that starts with the name
        }
        let stripped = TextRules.trimmed(String(rest))
        return stripped.isEmpty ? text : stripped
    }
}
