import ChatWire
import Logging

/// Where a program serves `/metrics`, `/healthz` and `/readyz`.
public struct OpsEndpoint: Sendable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// The endpoint from `METRICS_IP` and the program's port setting (or,
    /// when that is unset, an older name for it).
    public init(_ settings: SettingsReader, port setting: Setting, fallback: Setting? = nil) throws {
        host = settings.string(.metricsIP, default: "127.0.0.1")
        if settings.raw(setting) == nil, let fallback, settings.raw(fallback) != nil {
            port = try settings.int(fallback)
        } else {
            port = try settings.int(setting)
        }
    }

    /// Starts the HTTP endpoint (metrics must be bootstrapped first).
    public func start(logger: Logger, readiness: @escaping OpsServer.Route) async throws -> OpsServer {
        try await OpsServer(host: host, port: port, readiness: readiness, logger: logger)
    }
}

extension OpsServer {
    /// The base URL, for ready lines and logs.
    public func url(host: String) -> String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }

    /// A `/readyz` answer from named checks: 200 when all pass, 503 naming the failures.
    public static func readiness(_ checks: [(name: String, ok: Bool)]) -> Response {
        let failed = checks.filter { !$0.ok }.map(\.name)
        let body = checks.map { "\($0.name) \($0.ok ? "ok" : "unreachable")" }.joined(separator: "\n") + "\n"
        return Response(status: failed.isEmpty ? .ok : .serviceUnavailable, text: body)
    }
}
