import ChatWire
import Foundation

/// Where the store keeps its data: SQLite in a file (the default), or
/// PostgreSQL named by `DATABASE_URL`.
enum DatabaseLocation: Sendable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let location): location.description
        }
    }
}

/// A PostgreSQL server and database, from
/// `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=MODE]` (or
/// `postgresql://`; `HOST` may be a socket directory, percent-encoded, as
/// in `postgres://udpchat@%2Frun%2Fpostgresql/udpchat`). The password never
/// goes in the URL: it is read from the file `DATABASE_PASSWORD_FILE` names.
struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    enum TLSMode: String, Sendable {
        /// Plain TCP (a socket on the same host, or a trusted network).
        case disable
        /// TLS when the server offers it, without checking its certificate.
        case prefer
        /// TLS, without checking the certificate (as libpq's `require`).
        case require
        /// TLS with the certificate checked against the system's roots and the host name.
        case verifyFull = "verify-full"
    }

    var user: String
    var host: String
    var port: Int
    var database: String
    var tls: TLSMode
    var password: String?

    /// A Unix socket directory rather than a TCP host.
    var socketPath: String? { host.hasPrefix("/") ? "\(host)/.s.PGSQL.\(port)" : nil }

    /// The URL without any secret, for logs.
    var description: String { "postgres://\(user)@\(host):\(port)/\(database)?sslmode=\(tls.rawValue)" }

    /// Parses `url`; `password` comes from the password file, if any.
    init(url: String, password: String?) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
            scheme == "postgres" || scheme == "postgresql"
        else {
            throw ChatError.configuration("DATABASE_URL must look like postgres://USER@HOST:PORT/DATABASE (got \(Self.redacted(url)))")
        }
        guard components.password == nil else {
            throw ChatError.configuration(
                "DATABASE_URL must not carry a password (it would show in logs and process listings): put it in a file and name that file in DATABASE_PASSWORD_FILE"
            )
        }
        guard let user = components.user, !user.isEmpty else { throw ChatError.configuration("DATABASE_URL names no user (postgres://USER@HOST/DATABASE)") }
        guard let host = components.percentEncodedHost.flatMap({ $0.removingPercentEncoding }), !host.isEmpty else {
            throw ChatError.configuration("DATABASE_URL names no host (postgres://USER@HOST/DATABASE)")
        }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw ChatError.configuration("DATABASE_URL names no database (postgres://USER@HOST/DATABASE)")
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw ChatError.configuration("DATABASE_URL has port \(port), outside 1-65535") }
        var tls: TLSMode = host.hasPrefix("/") ? .disable : .prefer
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = TLSMode(rawValue: value) else {
                    throw ChatError.configuration("DATABASE_URL sslmode must be disable, prefer, require or verify-full (got \(item.value ?? ""))")
                }
                if mode != .disable && host.hasPrefix("/") {
                    throw ChatError.configuration("DATABASE_URL: sslmode=\(mode.rawValue) with a Unix socket; use sslmode=disable there")
                }
                tls = mode
            default:
                throw ChatError.configuration("DATABASE_URL has an unknown parameter \(item.name) (only sslmode is understood)")
            }
        }
        self.user = user
        self.host = host
        self.port = port
        self.database = database
        self.tls = tls
        self.password = password
    }

    /// The URL with anything after `://user:` up to `@` replaced, for an error message.
    private static func redacted(_ url: String) -> String {
        guard let at = url.firstIndex(of: "@"), let scheme = url.range(of: "://") else { return url }
        let credentials = url[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }
}
