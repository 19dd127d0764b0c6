import ChatWire
import Foundation
import NIOCore
import Ops

/// udpchat-web's settings (the README and `.env.sample` document each).
struct WebSettings: Sendable {
    var bind: String
    var port: Int
    /// The edge, resolved once at start.
    var upstream: SocketAddress
    var upstreamText: String
    var inactivity: Duration
    /// Certificate and key files, both or neither.
    var tls: (certificate: String, key: String)?
    var origins: OriginPolicy
    var maxConnections: Int
    var messagesPerSecond: Int
    /// The largest frame relayed: the edge's datagram limit.
    var maxFrameBytes: Int

    init(_ settings: SettingsReader) throws {
        bind = settings.string(.webBind, default: "127.0.0.1")
        port = try settings.int(.wsPort)
        let host = settings.string(.udpServerHost, default: "127.0.0.1")
        let udpPort = try settings.int(.udpServerPort)
        do {
            upstream = try SocketAddress.makeAddressResolvingHost(host, port: udpPort)
        } catch {
            throw ChatError.configuration("\(Setting.udpServerHost.name)=\(host): cannot resolve it (\(error))")
        }
        upstreamText = "\(host):\(udpPort)"
        inactivity = .milliseconds(try settings.int(.inactivityTimeout))
        switch (settings.raw(.webTLSCert), settings.raw(.webTLSKey)) {
        case (nil, nil): tls = nil
        case (let certificate?, let key?): tls = (certificate, key)
        default: throw ChatError.configuration("\(Setting.webTLSCert.name) and \(Setting.webTLSKey.name) go together: set both or neither")
        }
        origins = try OriginPolicy(settings.string(.webAllowedOrigins, default: ""))
        maxConnections = try settings.int(.webMaxConnections)
        messagesPerSecond = try settings.int(.webMessagesPerSecond)
        maxFrameBytes = try settings.int(.bufferSize)
    }

    /// The address to print: a wildcard bind is reached through loopback.
    func pageURL(port: Int) -> String {
        let host = ["0.0.0.0", "::", ""].contains(bind) ? "127.0.0.1" : bind.contains(":") ? "[\(bind)]" : bind
        return "\(tls == nil ? "http" : "https")://\(host):\(port)/"
    }
}

/// Which pages may open a WebSocket. Browsers send the page's origin
/// with every upgrade; a page from another site must not be able to
/// spend this bridge's connections and the edge's trust in its address.
struct OriginPolicy: Sendable, Equatable {
    /// Origins allowed besides the bridge's own; nil: any.
    var allowed: Set<String>?

    init(_ text: String) throws {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if items == ["*"] {
            allowed = nil
            return
        }
        for item in items where !(item.hasPrefix("http://") || item.hasPrefix("https://")) || item.dropFirst(8).contains("/") {
            throw ChatError.configuration(
                "\(Setting.webAllowedOrigins.name): '\(item)' is not an origin (scheme://host[:port], no path; or * alone)")
        }
        allowed = Set(items.map { $0.lowercased() })
    }

    /// Whether an upgrade with this `Origin` header (nil: none sent) and
    /// `Host` header may go ahead. A browser always sends its page's
    /// origin, http(s)://… (or `null`); anything else comes from a program,
    /// which could send any origin it liked, so it is not judged by it.
    func admits(origin: String?, host: String?) -> Bool {
        guard let allowed, let origin else { return true }
        let given = origin.lowercased()
        guard given == "null" || given.hasPrefix("http://") || given.hasPrefix("https://") else { return true }
        if allowed.contains(given) { return true }
        // The page's own origin: scheme://HOST where HOST is what the
        // browser asked this server for.
        guard let host = host?.lowercased(), let separator = given.range(of: "://") else { return false }
        return given[separator.upperBound...] == host
    }
}
