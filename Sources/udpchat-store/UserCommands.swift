import ArgumentParser
import ChatWire
import Foundation
import Ops

#if canImport(Glibc)
    import Glibc
#endif

/// `udpchat-store user ...`: accounts, for operators.
struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Manage accounts.", subcommands: [SetPassword.self, ListUsers.self, DeleteUser.self])
}

struct SetPassword: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-password",
        abstract: "Set an account's password (created if missing), read from the terminal or stdin, never from arguments.")

    @Argument(help: "The account's email address.")
    var email: String

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-store") {
            let email = TextRules.trimmed(self.email).lowercased()
            guard TextRules.isValidEmail(email) else { throw ChatError.storage("\(email) is not a valid email address") }
            let password = try Self.readPassword()
            guard password.count >= 8 else { throw ChatError.storage("a password needs at least 8 characters") }
            let hash = try PasswordHash.make(password)
            let created = try AdminDatabase.open().write { tx -> Bool in
                let now = Int64(Date().timeIntervalSince1970)
                var created = false
                let user: UserRow
                if let existing = try tx.user(email: email) {
                    user = existing
                } else {
                    user = try tx.insertUser(
                        userId: SecureRandom.identifier(), email: email, name: TextRules.defaultName(forEmail: email), now: now)
                    created = true
                }
                try tx.setPasswordHash(user: user.rowId, hash: hash)
                return created
            }
            print(created ? "created \(email) with a password" : "password of \(email) set")
        }
    }

    /// The password from the terminal (twice, without echo) or the first line of stdin.
    static func readPassword() throws -> String {
        guard isatty(0) == 1 else {
            guard let line = readLine(strippingNewline: true), !line.isEmpty else { throw ChatError.storage("no password on stdin") }
            return line
        }
        func prompt(_ text: String) -> String? {
            FileHandle.standardError.write(Data(text.utf8))
            var original = termios()
            tcgetattr(0, &original)
            var silent = original
            silent.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(0, TCSANOW, &silent)
            defer {
                tcsetattr(0, TCSANOW, &original)
                FileHandle.standardError.write(Data("\n".utf8))
            }
            return readLine(strippingNewline: true)
        }
        guard let first = prompt("New password: "), let second = prompt("Again: ") else { throw ChatError.storage("no password given") }
        guard first == second else { throw ChatError.storage("the two passwords differ") }
        return first
    }
}

struct ListUsers: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the accounts.")

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-store") {
            let users = try AdminDatabase.open().read { tx in try tx.allUsers() }
            for user in users {
                let password: String
                switch user.passwordHash {
                case let hash? where PasswordHash.isLegacy(hash): password = "md5 (upgraded at next login)"
                case let hash? where !hash.isEmpty: password = "scrypt"
                default: password = "none"
                }
                print("\(user.email)\t\(user.name)\t\(user.userId)\tpassword: \(password)")
            }
            print("\(users.count) accounts")
        }
    }
}

struct DeleteUser: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete an account with its memberships and messages; its sessions are logged out.")

    @Argument(help: "The account's email address.")
    var email: String

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-store") {
            let email = TextRules.trimmed(self.email).lowercased()
            guard let messages = try AdminDatabase.open().write({ tx in try tx.deleteUser(email: email) }) else {
                throw ChatError.storage("no account \(email)")
            }
            print("deleted \(email) and \(messages) of their messages")
        }
    }
}

struct ImportLegacy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-legacy",
        abstract: "Copy users, rooms, members and messages from the original server's SQLite database (chat.db).")

    @Argument(help: "Path of the original server's database.")
    var path: String

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-store") {
            guard case .sqlite(let backend) = try AdminDatabase.open() else {
                throw ChatError.storage("import-legacy writes SQLite: import with DATABASE_URL unset, then `udpchat-store copy-to DATABASE_URL`")
            }
            print(try LegacyImport.run(from: path, into: backend))
        }
    }
}
