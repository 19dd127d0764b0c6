import ArgumentParser
import ChatClient
import ChatWire
import Foundation
import Synchronization

/// The interactive chat: lines typed are sent to the open room, commands
/// start with `/`, and what others say appears as it arrives.
struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Chat interactively (type /help inside).")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var account: AccountOptions
    @Option(help: "Room to open at start (name or id); created if missing.")
    var room: String?

    static let help = """
        /rooms              list rooms
        /create NAME        create a room and open it
        /join NAME          join a room and open it
        /leave              leave the open room
        /members            who is in the open room
        /history            recent messages of the open room
        /ai [DRAFT]         ask the AI to write your next message (or improve DRAFT)
        /quit               leave the chat
        anything else       is sent to the open room
        """

    func run() async throws {
        try await reportingFailure {
            let client = try await connection.connect()
            let user = try await account.login(client)
            let view = ChatView(client: client, me: user)
            Console.say("Logged in as \(TextRules.printable(user.name)) <\(TextRules.printable(user.email))>. Type /help for commands.")
            if let room {
                try await view.open(try await enterRoom(client, room, create: true))
            } else if let current = user.room {
                try await view.open(current)
            } else {
                try await view.showRooms()
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await view.showIncoming() }
                group.addTask { await view.keepAlive() }
                group.addTask {
                    for await line in Console.lines() {
                        if try await !view.handle(line) { break }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
            await client.close()
        }
    }
}

/// What the chat shows and where it is.
final class ChatView: Sendable {
    let client: ChatClient
    let me: UserInfo
    private let state = Mutex(ViewState())

    struct ViewState {
        var room: RoomRef?
        var roomNames: [String: String] = [:]
        var shownMessages: Set<Int64> = []
        /// Names by user id, learnt from history, member lists and joins.
        var names: [String: String] = [:]
    }

    init(client: ChatClient, me: UserInfo) {
        self.client = client
        self.me = me
    }

    func open(_ room: RoomRef) async throws {
        state.withLock { state in
            state.room = room
            state.roomNames[room.roomId] = room.name
        }
        Console.say("-- \(TextRules.printable(room.name)) --")
        for item in try await client.history(roomId: room.roomId) {
            state.withLock { $0.names[item.userId] = item.name }
            show(messageId: item.messageId, name: item.name, content: item.content, timestamp: item.timestamp, prefix: "")
        }
    }

    func showRooms() async throws {
        let rooms = try await client.listRooms()
        state.withLock { state in for room in rooms { state.roomNames[room.roomId] = room.name } }
        Console.say(rooms.isEmpty ? "No rooms yet: /create NAME" : "Rooms: " + rooms.map { TextRules.printable($0.name) }.joined(separator: ", "))
    }

    /// Handles one typed line; false to quit.
    func handle(_ line: String) async throws -> Bool {
        let text = TextRules.trimmed(line)
        guard !text.isEmpty else { return true }
        do {
            return try await command(text)
        } catch let error as ChatError {
            Console.say("! \(TextRules.printable("\(error)"))")
            return true
        }
    }

    private func command(_ text: String) async throws -> Bool {
        let current = state.withLock { $0.room }
        guard text.hasPrefix("/") else {
            guard let current else {
                Console.say("! Open a room first: /join NAME or /create NAME")
                return true
            }
            _ = try await client.sendMessage(roomId: current.roomId, content: text)
            return true
        }
        let parts = text.split(separator: " ", maxSplits: 1)
        let argument = parts.count > 1 ? TextRules.trimmed(String(parts[1])) : ""
        switch parts[0] {
        case "/quit", "/exit": return false
        case "/help": Console.say(Chat.help)
        case "/rooms": try await showRooms()
        case "/create":
            guard !argument.isEmpty else { Console.say("! /create NAME"); return true }
            try await open(try await client.createRoom(name: argument))
        case "/join":
            guard !argument.isEmpty else { Console.say("! /join NAME"); return true }
            try await open(try await enterRoom(client, argument, create: false))
        case "/leave":
            guard let current else { Console.say("! No room is open"); return true }
            _ = try await client.leaveRoom(id: current.roomId)
            state.withLock { $0.room = nil }
            Console.say("-- left \(TextRules.printable(current.name)) --")
        case "/members":
            guard let current else { Console.say("! No room is open"); return true }
            let members = try await client.members(roomId: current.roomId)
            state.withLock { state in for member in members { state.names[member.userId] = member.name } }
            Console.say("Members: " + members.map { TextRules.printable($0.isAdmin ? "\($0.name) (admin)" : $0.name) }.joined(separator: ", "))
        case "/history":
            guard let current else { Console.say("! No room is open"); return true }
            state.withLock { $0.shownMessages.removeAll() }
            try await open(current)
        case "/ai":
            guard let current else { Console.say("! No room is open"); return true }
            try client.askAI(roomId: current.roomId, draft: argument)
            Console.say("(asked the AI; its message will appear here)")
        default:
            Console.say("! Unknown command \(parts[0]); /help lists them")
        }
        return true
    }

    /// Prints broadcasts as they arrive.
    func showIncoming() async {
        while !Task.isCancelled {
            guard let received = await client.nextEvent(timeout: .seconds(60)) else { continue }
            let current = state.withLock { $0.room }
            switch received.packet {
            case .message(let event):
                let prefix = event.roomId == current?.roomId ? "" : "#\(roomName(event.roomId)) "
                show(messageId: event.messageId, name: event.name, content: event.content, timestamp: event.timestamp, prefix: prefix)
            case .memberJoined(let roomId, let member) where roomId == current?.roomId && member.userId != me.userId:
                state.withLock { $0.names[member.userId] = member.name }
                Console.say("* \(TextRules.printable(member.name)) joined")
            case .memberLeft(let roomId, let memberId) where roomId == current?.roomId:
                Console.say("* \(TextRules.printable(state.withLock { $0.names[memberId] } ?? "someone")) left")
            case .roomList(let rooms):
                state.withLock { state in for room in rooms { state.roomNames[room.roomId] = room.name } }
            case .error(let message):
                Console.say("! \(TextRules.printable(message))")
            default:
                break
            }
        }
    }

    /// A STATUS now and then keeps the session receiving broadcasts.
    func keepAlive() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(20))
            _ = try? await client.status()
        }
    }

    private func roomName(_ id: String) -> String { state.withLock { $0.roomNames[id] } ?? String(id.prefix(8)) }

    private func show(messageId: Int64, name: String, content: String, timestamp: Int64, prefix: String) {
        let fresh = state.withLock { $0.shownMessages.insert(messageId).inserted }
        if fresh { Console.say(prefix + Display.line(name: name, content: content, timestamp: timestamp)) }
    }
}

/// Terminal input and output; output is flushed at once so it interleaves
/// correctly with typing and with pipes.
enum Console {
    static func say(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// Lines from stdin, read on a thread of their own (reading blocks).
    static func lines() -> AsyncStream<String> {
        AsyncStream { continuation in
            let thread = Thread {
                while let line = readLine(strippingNewline: true) { continuation.yield(line) }
                continuation.finish()
            }
            thread.start()
        }
    }
}
