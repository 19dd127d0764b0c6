import ChatWire
import IPCMessages
import Testing

@testable import udpchat_ai

@Suite struct PromptTests {
    static func job(draft: String) -> IPCAIJob {
        var job = IPCAIJob()
        job.roomID = "r"
        job.roomName = "Lounge"
        job.userName = "alice"
        job.draft = draft
        for (name, content) in [("alice", "hi"), ("bob", "how are you?")] {
            var message = IPCContextMessage()
            message.name = name
            message.content = content
            job.context.append(message)
        }
        return job
    }

    @Test func generateModeSendsHistoryOldestFirstThenTheTask() {
        let messages = Prompt.messages(for: Self.job(draft: ""))
        #expect(messages.map(\.role) == [.system, .user, .user, .user])
        #expect(messages[0].content.contains("You are alice") && messages[0].content.contains("Lounge"))
        #expect(messages[1].content == "alice: hi" && messages[2].content == "bob: how are you?")
        #expect(messages[3].content.hasPrefix("Write the next message alice would send"))
    }

    @Test func improveModeQuotesTheDraft() {
        let messages = Prompt.messages(for: Self.job(draft: "c u l8r"))
        #expect(messages.last?.content.contains("\"c u l8r\"") == true)
        #expect(messages.last?.content.contains("Rewrite") == true)
    }

    /// docs/protocol.md §8.2's clean-up, numbered.
    @Test(arguments: [
        (1, "  \"Sure thing!\"  ", "Sure thing!"),
        (2, "'quoted'", "quoted"),
        (3, "alice: on my way", "on my way"),
        (4, "Alice - on my way", "on my way"),
        (5, "ALICE on my way", "on my way"),
        (6, "alicesmith is here", "alicesmith is here"),
        (7, "alice:", "alice:"),
        (8, "\u{201C}alice: curly\u{201D}", "curly"),
        (9, "  \n ", ""),
        (10, "Nothing to strip", "Nothing to strip"),
    ])
    func repliesAreCleaned(number: Int, reply: String, cleaned: String) {
        #expect(Prompt.cleaned(reply, userName: "alice") == cleaned, "vector \(number)")
    }
}
