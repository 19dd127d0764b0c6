import Foundation

/// Server fingerprints pinned on first use, the way ssh's known_hosts
/// works: one `host:port fingerprint` line per server.
public struct KnownHosts: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// `$UDPCHAT_KNOWN_HOSTS`, else `~/.config/udpchat/known_hosts`.
    public static var defaultPath: String {
        if let path = ProcessInfo.processInfo.environment["UDPCHAT_KNOWN_HOSTS"], !path.isEmpty { return path }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
        return home + "/.config/udpchat/known_hosts"
    }

    /// The fingerprint pinned for `server`, if any.
    public func fingerprint(for server: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, fields[0] == server { return String(fields[1]) }
        }
        return nil
    }

    /// Pins `fingerprint` for `server`.
    public func pin(_ fingerprint: String, for server: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        // A file that exists but cannot be read is an error, not an empty file:
        // writing over it would lose every pin in it.
        var text = ""
        if FileManager.default.fileExists(atPath: path) {
            text = try String(contentsOfFile: path, encoding: .utf8)
        }
        if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
        text += "\(server) \(fingerprint)\n"
        try Data(text.utf8).write(to: url, options: .atomic)
    }
}
