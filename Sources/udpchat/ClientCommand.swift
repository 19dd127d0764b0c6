import ArgumentParser
import ChatClient
import ChatWire
import Foundation

@main
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpchat",
        abstract: "Chat over UDP with a udpchat (or UDPChat-AI) server.",
        discussion: """
            The server's key fingerprint is pinned on first use in ~/.config/udpchat/known_hosts \
            (UDPCHAT_KNOWN_HOSTS overrides the path); a changed key is refused. A password, for accounts \
            that have one, is read from UDPCHAT_PASSWORD.
            """,
        subcommands: [Chat.self, Send.self, History.self, Rooms.self, Hello.self, Bench.self])
}

/// How to reach the server and who to be.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Server address as HOST:PORT ([IPv6]:PORT); default UDPCHAT_SERVER, else 127.0.0.1:9999.")
    var server: String?
    @Option(help: "Seconds to wait for each answer.")
    var timeout: Double = 5
    @Option(help: "Known-hosts file for fingerprint pinning.")
    var knownHosts: String?
    @Option(help: "Size of this client's RSA key (1024 or 2048, as the web clients use).")
    var keyBits: Int = 2048
    @Flag(help: "The server does not mark its nonces (the original Python server): take packets without the mark.")
    var unmarkedNonces = false

    func serverAddress() throws -> (host: String, port: Int) {
        let text = server ?? ProcessInfo.processInfo.environment["UDPCHAT_SERVER"] ?? "127.0.0.1:\(WireSpec.defaultPort)"
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[close...].hasPrefix("]:") else {
                throw ValidationError("--server \(text): expected [IPv6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw ValidationError("--server \(text): expected HOST:PORT") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (1...65535).contains(port) else {
            throw ValidationError("--server \(text): expected HOST:PORT with a port from 1 to 65535")
        }
        return (String(host), port)
    }

    /// A connected client (handshake done, fingerprint checked).
    func connect() async throws -> ChatClient {
        let (host, port) = try serverAddress()
        var options = ChatClient.Options(
            host: host, port: port, knownHosts: KnownHosts(path: knownHosts ?? KnownHosts.defaultPath), keyBits: keyBits,
            timeout: .milliseconds(Int64(timeout * 1000)))
        options.serverNoncesMarked = !unmarkedNonces
        let client = try await ChatClient(options: options)
        do {
            try await client.connect()
        } catch {
            await client.close()
            throw error
        }
        return client
    }
}

struct AccountOptions: ParsableArguments {
    @Option(help: "Your email address (a new one creates the account).")
    var email: String

    func login(_ client: ChatClient) async throws -> UserInfo {
        try await client.login(email: email, password: ProcessInfo.processInfo.environment["UDPCHAT_PASSWORD"])
    }
}

/// Runs a subcommand, turning a failure into one clear line and exit code 1.
func reportingFailure(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ValidationError {
        throw error
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("udpchat: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// Finds a room by name (or id), optionally creating it, and joins it.
func enterRoom(_ client: ChatClient, _ nameOrId: String, create: Bool) async throws -> RoomRef {
    let rooms = try await client.listRooms()
    if let room = rooms.first(where: { $0.name == nameOrId || $0.roomId == nameOrId }) {
        return try await client.joinRoom(id: room.roomId)
    }
    guard create else { throw ChatClientError.refused("no room named \(nameOrId) (use --create to make it)") }
    return try await client.createRoom(name: nameOrId)
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send one message to a room and print its id.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var account: AccountOptions
    @Option(help: "Room name (or id).")
    var room: String
    @Flag(help: "Create the room if it does not exist.")
    var create = false
    @Argument(help: "The message.")
    var message: [String]

    func run() async throws {
        try await reportingFailure {
            let text = message.joined(separator: " ")
            guard !TextRules.trimmed(text).isEmpty else { throw ValidationError("the message is empty") }
            let client = try await connection.connect()
            _ = try await account.login(client)
            let entered = try await enterRoom(client, room, create: create)
            let sent = try await client.sendMessage(roomId: entered.roomId, content: text)
            print("sent message \(sent.messageId) to \(TextRules.printable(entered.name))")
            await client.close()
        }
    }
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a room's recent messages, oldest first.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var account: AccountOptions
    @Option(help: "Room name (or id).")
    var room: String
    @Flag(help: "One JSON object per line instead of text.")
    var json = false

    func run() async throws {
        try await reportingFailure {
            let client = try await connection.connect()
            _ = try await account.login(client)
            let entered = try await enterRoom(client, room, create: false)
            for item in try await client.history(roomId: entered.roomId) {
                print(json ? item.json.jsonText : Display.line(name: item.name, content: item.content, timestamp: item.timestamp))
            }
            await client.close()
        }
    }
}

struct Rooms: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the public rooms.")

    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "One JSON object per line instead of text.")
    var json = false

    func run() async throws {
        try await reportingFailure {
            let client = try await connection.connect()
            for room in try await client.listRooms() { print(json ? room.json.jsonText : TextRules.printable(room.name)) }
            await client.close()
        }
    }
}

struct Hello: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that the server answers; print its fingerprint.")

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await reportingFailure {
            let client = try await connection.connect()
            print(try await client.hello())
            print("fingerprint: \(client.session?.fingerprint ?? "?")")
            await client.close()
        }
    }
}

enum Display {
    static func line(name: String, content: String, timestamp: Int64) -> String {
        let date = Date(timeIntervalSince1970: TimeInterval(timestamp))
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm"
        return "[\(formatter.string(from: date))] \(TextRules.printable(name)): \(TextRules.printable(content))"
    }
}
