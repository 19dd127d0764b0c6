import ArgumentParser
import ChatLog
import ChatWire
import IPC
import NIOCore
import NIOPosix
import Ops

@main
struct EdgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpchat-edge",
        abstract: "The UDP front door: handshakes, AES-GCM, sessions, replay protection and reliable broadcasts.",
        discussion: "Settings come from the environment and the environment file (see the README).")

    @Option(name: .customLong("ip"), help: "UDP address to bind (overrides SERVER_IP).")
    var ip: String?
    @Option(help: "UDP port to bind; 0 picks a free one (overrides SERVER_PORT).")
    var port: Int?
    @Option(help: "Port of /metrics, /healthz and /readyz (overrides EDGE_METRICS_PORT; 0: any free one).")
    var metricsPort: Int?

    func run() async throws {
        try await ProgramRunner("udpchat-edge", metricsPort: .edgeMetricsPort, fallback: .metricsPort)
            .run(metricsPortOverride: metricsPort) { program in try await serve(program) }
    }

    private func serve(_ program: ProgramRunner.Context) async throws -> ProgramRunner.Serving {
        var settings = try EdgeSettings(program.settings)
        if let ip { settings.host = ip }
        if let port {
            guard (0...65535).contains(port) else { throw ChatError.configuration("--port must be 0 to 65535") }
            settings.port = port
        }
        let logger = program.logger
        let reactor = ZMQReactor(context: ZMQContext(security: try settings.common.planeSecurity(for: .edge)), name: "edge-zmq")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        program.atExit { try? await group.shutdownGracefully() }
        let timeout = settings.common.rpcTimeout
        let stores = try Endpoint.list(settings.common.storeEndpoint)
        let streams = try Endpoint.list(settings.common.eventsEndpoint)
        try SocketDirectory.check([settings.common.keysEndpoint] + stores + streams)
        let keys = KeysClient(
            rpc: try RPCClient(reactor: reactor, endpoint: settings.common.keysEndpoint, name: "udpchat-keys", logger: logger),
            timeout: timeout)
        let store = StoreClient(
            rpc: try RPCClient(reactor: reactor, endpoints: stores, name: "udpchat-store", logger: logger),
            timeout: timeout)
        let loop = group.next()
        let server = EdgeServer(settings: settings, loop: loop, keys: keys, store: store, logger: logger)
        _ = try Subscriber(reactor: reactor, endpoints: streams, logger: logger) { _, body in
            server.eventArrived(body)
        }
        let readSize = settings.bufferSize + 1  // one byte more tells an oversized datagram from a full one
        let channel = try await DatagramBootstrap(group: loop)
            // Several edges on one host share the port when asked (the kernel spreads clients by address).
            // Never SO_REUSEADDR: on UDP it lets a second socket bind a port in use (even one the
            // kernel picks for port 0) and take its datagrams.
            .channelOption(ChannelOptions.Types.SocketOption(level: .socket, name: .init(rawValue: SO_REUSEPORT)), value: settings.reusePort ? 1 : 0)
            // A deep receive queue rides out bursts and floods without dropping
            // established sessions' datagrams (the kernel caps it at net.core.rmem_max).
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            // recvmmsg: up to 16 datagrams a read, each with room for the largest accepted.
            .channelOption(.datagramVectorReadMessageCount, value: Self.readBatch)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.readBatch * readSize))
            // Nothing is read before the server starts (its machine and channel set).
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramHandler(server: server, logger: logger))
                }
            }
            .bind(host: settings.host, port: settings.port)
            .get()
        let ops = try await program.startOps { [server] in
            let (keys, store) = await server.peersRespond(within: .milliseconds(800))
            return OpsServer.readiness([("udpchat-keys", keys), ("udpchat-store", store)])
        }
        server.start(channel: channel)
        let bound = channel.localAddress.flatMap(PeerAddress.init)?.description ?? "\(settings.host):\(settings.port)"
        logger.info(
            "serving UDP",
            metadata: .fields(.address(bound), .value("keys", settings.common.keysEndpoint), .value("store", settings.common.storeEndpoint)))

        // On SIGTERM: take no new requests (only ACKs), answer the requests
        // in flight, let acknowledging clients confirm the broadcasts sent to
        // them, report liveness to the store, then close. At most 5 s.
        let service = ReactorService(reactor: reactor, ops: ops) {
            await server.drain(limit: .seconds(5))
            try? await channel.setOption(.autoRead, value: false).get()
            try? await channel.close()
        }
        return .init(ready: "udp=\(bound)", services: [service], drainLimit: .seconds(15))
    }

    /// Implementation constant: datagrams read with one system call.
    static let readBatch = 16
}
