import ChatWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The directories of `ipc://` endpoints. On one host, file permissions are
/// what keeps a program's socket to the programs meant to reach it
/// (docs/security.md): a directory that other users can enter lets any
/// local account connect, so programs refuse one at start.
public enum SocketDirectory {
    /// Why `directory` may not hold sockets, or nil when only its owner and
    /// group can reach it (or it does not exist yet).
    public static func problem(_ directory: String) -> String? {
        var info = stat()
        guard stat(directory, &info) == 0 else { return nil }
        guard info.st_mode & S_IFMT == S_IFDIR else { return "\(directory) is not a directory" }
        let mode = info.st_mode & 0o7777
        guard mode & 0o007 == 0 else {
            return "the socket directory \(directory) is open to every local user (mode \(String(mode, radix: 8)));"
                + " allow only its owner and group: chmod o-rwx \(directory)"
        }
        return nil
    }

    /// Creates the directory of each `ipc://` endpoint a program binds
    /// (mode 0700 when new; an existing one keeps its mode and group), then
    /// refuses any that other users can reach.
    public static func prepare(binding endpoints: [String]) throws {
        for directory in directories(endpoints) where !FileManager.default.fileExists(atPath: directory) {
            let parent = (directory as NSString).deletingLastPathComponent
            if !parent.isEmpty { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
            // mkdir with the mode itself: a chmod after it would leave a
            // moment in which another program starting beside this one finds
            // the directory open (and refuses it). Another may also make it first.
            guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
                throw ChatError.configuration("cannot create the socket directory \(directory): \(String(cString: strerror(errno)))")
            }
        }
        try check(endpoints)
    }

    /// Refuses the `ipc://` endpoints (bound or connected to) whose
    /// directory other users can reach.
    public static func check(_ endpoints: [String]) throws {
        for directory in directories(endpoints) {
            if let problem = problem(directory) { throw ChatError.configuration(problem) }
        }
    }

    private static func directories(_ endpoints: [String]) -> [String] {
        var seen: Set<String> = []
        return endpoints.compactMap { Endpoint.ipcDirectory($0) }.filter { !$0.isEmpty && seen.insert($0).inserted }
    }
}
