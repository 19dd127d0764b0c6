import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A bare UDP socket for traffic a test only sends and counts (a flood):
/// no event loop, no parsing, a few microseconds a datagram.
final class RawUDPSocket: @unchecked Sendable {
    let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 65_536)

    /// Bound to `host` (any port) and connected to 127.0.0.1:`port`.
    init(from host: String, to port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(what: "socket", errno: errno) }
        var local = Self.address(host, port: 0)
        var remote = Self.address("127.0.0.1", port: port)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, connected == 0 else {
            close(fd)
            throw SocketError(what: "bind \(host) or connect", errno: errno)
        }
    }

    deinit { close(fd) }

    struct SocketError: Error {
        var what: String
        var errno: Int32
    }

    private static func address(_ host: String, port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        return address
    }

    /// Sends `bytes`; false when the kernel would not take it now.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) } == bytes.count
    }

    /// The datagrams waiting, each passed to `body`, without blocking.
    func drain(_ body: (UnsafeRawBufferPointer) -> Void) {
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count >= 0 else { return }
            buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        }
    }
}
