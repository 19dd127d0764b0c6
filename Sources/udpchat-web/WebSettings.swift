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
/// with every upgrade; a page from another site must not be able to use
/// its visitors' browsers to reach this bridge (one on 127.0.0.1, say) or
/// spend its connections.
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
    /// `Host` header may go ahead.
    ///
    /// - No origin, or a ws:// or wss:// one, comes from a program, not a
    ///   browser (browsers send the page's origin): a program could send any
    ///   origin it liked, so it is not judged by it.
    /// - A listed origin is allowed.
    /// - The page's own origin (its host is the `Host` the browser asked
    ///   for) is allowed when that host is an IP address or `localhost`. A
    ///   name could be anyone's pointing at this address (DNS rebinding):
    ///   a bridge reached by name lists its origin in WEB_ALLOWED_ORIGINS.
    func admits(origin: String?, host: String?) -> Bool {
        guard let allowed, let origin else { return true }
        let given = origin.lowercased()
        if given.hasPrefix("ws://") || given.hasPrefix("wss://") { return true }
        if allowed.contains(given) { return true }
        guard let host = host?.lowercased(), let separator = given.range(of: "://"),
            given.hasPrefix("http://") || given.hasPrefix("https://"), given[separator.upperBound...] == host
        else { return false }
        return Self.isAddressOrLocalhost(host)
    }

    /// `host[:port]` names an IP address (`[v6]` too) or localhost.
    static func isAddressOrLocalhost(_ authority: String) -> Bool {
        var name = authority
        if name.hasPrefix("[") { return name.contains("]") }
        if let colon = name.lastIndex(of: ":") { name = String(name[..<colon]) }
        if name == "localhost" { return true }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }
}
