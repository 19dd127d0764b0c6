import ChatLog
import ChatWire
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A small HTTP/1.1 server for operators: `/metrics` (Prometheus),
/// `/healthz` (the process is alive) and `/readyz` (its peers are
/// reachable). GET only; anything else is 404 or 405.
public final class OpsServer: Sendable {
    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var contentType: String
        public var body: [UInt8]

        public init(status: HTTPResponseStatus = .ok, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }

        public init(status: HTTPResponseStatus = .ok, text: String) {
            self.init(status: status, body: Array(text.utf8))
        }
    }

    public typealias Route = @Sendable () async -> Response

    private let channel: any Channel
    /// The port it listens on (useful with port 0).
    public let port: Int

    /// Listens on `host:port`. `readiness` answers `/readyz`.
    public init(host: String, port: Int, readiness: @escaping Route, logger: Logger) async throws {
        let routes: [String: Route] = [
            "/metrics": { Response(contentType: "text/plain; version=0.0.4; charset=utf-8", body: Observability.exposition()) },
            "/healthz": { Response(text: "ok\n") },
            "/readyz": readiness,
        ]
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(routes: routes))
                }
            }
            .bind(host: host, port: port).get()
        self.port = channel.localAddress?.port ?? port
        logger.info("metrics and health", metadata: .fields(.address("http://\(host):\(self.port)")))
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let routes: [String: Route]
        private var head: HTTPRequestHead?

        init(routes: [String: Route]) { self.routes = routes }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch Self.unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                guard let head else { return }
                self.head = nil
                let path = String(head.uri.prefix { $0 != "?" })
                let keepAlive = head.isKeepAlive
                let loop = context.eventLoop
                let bound = NIOLoopBound(context, eventLoop: loop)
                guard head.method == .GET || head.method == .HEAD else {
                    respond(bound.value, Response(status: .methodNotAllowed, text: "GET only\n"), keepAlive: keepAlive, head: false)
                    return
                }
                guard let route = routes[path] else {
                    respond(bound.value, Response(status: .notFound, text: "not found\n"), keepAlive: keepAlive, head: false)
                    return
                }
                let onlyHead = head.method == .HEAD
                let promise = loop.makePromise(of: Response.self)
                promise.completeWithTask { await route() }
                promise.futureResult.whenSuccess { [self] response in
                    respond(bound.value, response, keepAlive: keepAlive, head: onlyHead)
                }
            }
        }

        private func respond(_ context: ChannelHandlerContext, _ response: Response, keepAlive: Bool, head onlyHead: Bool) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: response.contentType)
            headers.add(name: "Content-Length", value: String(response.body.count))
            headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
            context.write(
                Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
            if !onlyHead {
                context.write(
                    Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
            }
            let done = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }
}
