import ArgumentParser
import ChatLog
import ChatWire
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOSSL
import Ops
import ServiceLifecycle

@main
struct WebCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpchat-web",
        abstract: "The web page, and the WebSocket bridge that lets browsers reach udpchat-edge.",
        discussion: """
            Serves the chat page at / and WebSockets at /ws: each WebSocket gets a UDP socket of its own toward \
            UDP_SERVER_HOST:UDP_SERVER_PORT, and every frame is one datagram. The crypto stays in the browser. \
            Browsers allow WebCrypto on http://127.0.0.1 and http://localhost only; anywhere else, set WEB_TLS_CERT \
            and WEB_TLS_KEY.
            """)

    @Option(help: "Port of /metrics, /healthz and /readyz (overrides WEB_METRICS_PORT; 0: any free one).")
    var metricsPort: Int?

    func run() async throws {
        try await ProgramRunner("udpchat-web", metricsPort: .webMetricsPort)
            .run(metricsPortOverride: metricsPort) { program in try await serve(program) }
    }

    private func serve(_ program: ProgramRunner.Context) async throws -> ProgramRunner.Serving {
        let settings = try WebSettings(program.settings)
        let logger = program.logger
        let relay = Relay(settings: settings, gate: ConnectionGate(limit: settings.maxConnections), metrics: WebMetrics(), logger: logger)
        let router = Router()
        PageRoutes.add(to: router)

        let webSocket = WebSocketServerConfiguration(
            maxFrameSize: WireSpec.maxDatagram + 1, autoPing: .enabled(timePeriod: .seconds(30)), closeTimeout: .seconds(10),
            validateUTF8: true)
        var server = HTTPServerBuilder.http1WebSocketUpgrade(configuration: .init(ws: webSocket)) { head, channel, _ in
            guard head.path?.split(separator: "?").first == "/ws" else { return .dontUpgrade }
            let peer = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
            // A page from a site not allowed gets its WebSocket closed at once
            // with the reason (a refused upgrade would tell it nothing); no
            // UDP socket is opened for it.
            let origin = head.headerFields[.origin]
            guard settings.origins.admits(origin: origin, host: head.authority) else {
                return .upgrade([:]) { _, outbound, _ in try await relay.refuse(origin: origin ?? "", outbound: outbound, peer: peer) }
            }
            return .upgrade([:]) { inbound, outbound, _ in
                try await relay.run(inbound: inbound, outbound: outbound, channel: channel, peer: peer)
            }
        }
        if let tls = settings.tls {
            server = try .tls(server, tlsConfiguration: try Self.tlsConfiguration(certificate: tls.certificate, key: tls.key))
        }

        let (listening, announce) = AsyncStream<Int>.makeStream()
        let serving = MutexBox(false)
        let application = Application(
            router: router, server: server,
            configuration: .init(address: .hostname(settings.bind, port: settings.port), serverName: "udpchat-web"),
            onServerRunning: { channel in
                serving.value = true
                SystemdNotifier.notify("READY=1")
                announce.yield(channel.localAddress?.port ?? settings.port)
                announce.finish()
            },
            logger: logger)
        // Ready once the page and /ws are served.
        _ = try await program.startOps { OpsServer.readiness([("http", serving.value)]) }
        logger.info("relaying", metadata: .fields(.address(settings.upstreamText)))
        return .init(
            ready: "", readyEnd: "edge=\(settings.upstreamText)", services: [ListenService(application: application, settings: settings)],
            listening: {
                for await port in listening { return "url=\(settings.pageURL(port: port))" }
                throw CancellationError()
            })
    }

    static func tlsConfiguration(certificate: String, key: String) throws -> TLSConfiguration {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
            let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
        } catch {
            throw ChatError.configuration(
                "\(Setting.webTLSCert.name)/\(Setting.webTLSKey.name): cannot read \(certificate) and \(key): \(error)")
        }
    }
}

/// Runs the HTTP server; a port it cannot listen on ends the program
/// with one clear line.
struct ListenService: Service {
    let application: Application<RouterResponder<BasicRequestContext>>
    let settings: WebSettings

    func run() async throws {
        defer { SystemdNotifier.notify("STOPPING=1") }
        do {
            try await application.run()
        } catch let error as IOError {
            throw ChatError.configuration("cannot listen on \(settings.bind):\(settings.port): \(error)")
        }
    }
}
