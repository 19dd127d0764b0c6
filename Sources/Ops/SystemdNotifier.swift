import ChatWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Tells systemd what the program is doing (sd_notify's protocol: one
/// datagram on the Unix socket in `$NOTIFY_SOCKET`): `READY=1` when it
/// serves, `STOPPING=1` when it drains, `WATCHDOG=1` while alive when the
/// unit sets `WatchdogSec=`. Does nothing outside systemd.
public enum SystemdNotifier {
    /// Sends `state`; false when there is no systemd to tell, or it failed.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // the abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sockaddrPointer, length) }
            }
        }
        return sent == message.count
    }

    /// The watchdog interval the unit asked for, if any (`$WATCHDOG_USEC`).
    public static var watchdogInterval: Duration? {
        guard let text = ProcessInfo.processInfo.environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 else { return nil }
        if let pid = ProcessInfo.processInfo.environment["WATCHDOG_PID"], Int32(pid) != getpid() { return nil }
        return .microseconds(usec)
    }

    /// Pings the watchdog at half its interval until cancelled, but only
    /// while `alive` holds: a program whose work loop is stuck stops pinging
    /// and systemd restarts it.
    public static func keepWatchdogFed(while alive: @Sendable () -> Bool) async {
        guard let interval = watchdogInterval else { return }
        while !Task.isCancelled {
            if alive() { notify("WATCHDOG=1") }
            try? await Task.sleep(for: interval / 2)
        }
    }
}
