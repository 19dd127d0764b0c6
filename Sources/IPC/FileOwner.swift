import ChatWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Administrative commands run as root on files a service user owns
/// (`sudo udpchat-store backup`, `sudo udpchat-keys rotate`): they become
/// that user first, so every file they create (a new key, SQLite's -wal and
/// -shm) keeps the owner the service needs.
public enum FileOwner {
    /// When running as root and `path` exists and belongs to another user,
    /// switches to that user and group for the rest of the process; returns
    /// the uid switched to, or nil when nothing changed.
    @discardableResult
    public static func become(ownerOf path: String) throws -> UInt32? {
        guard geteuid() == 0, let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let uid = (attributes[.ownerAccountID] as? NSNumber)?.uint32Value,
            let gid = (attributes[.groupOwnerAccountID] as? NSNumber)?.uint32Value, uid != 0
        else { return nil }
        guard setgroups(0, nil) == 0, setgid(gid) == 0, setuid(uid) == 0 else {
            throw ChatError.configuration("cannot switch to the owner of \(path) (uid \(uid)): errno \(errno)")
        }
        return uid
    }
}
