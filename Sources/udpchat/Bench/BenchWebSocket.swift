import ChatWire
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// The bench's clients through udpchat-web (`--web`): a WebSocket takes
/// the place of each UDP socket, every datagram one text frame, as the
/// browser's page sends them. Frames are handled on the worker's loop
/// like datagrams, with no task hop.
enum BenchWebSocket {
    struct Endpoint: Sendable {
        var host: String
        var port: Int
        var path: String

        /// `ws://HOST:PORT/PATH`.
        init(_ text: String) throws(BenchError) {
            guard let url = URL(string: text), url.scheme == "ws", let host = url.host, let port = url.port else {
                throw BenchError("--web \(text): expected ws://HOST:PORT/PATH (udpchat-web's /ws)")
            }
            self.host = host
            self.port = port
            path = url.path.isEmpty ? "/ws" : url.path
        }
    }

    /// Opens a WebSocket to `endpoint` on `loop`; each text frame received
    /// goes to `received`, on the loop.
    static func connect(_ endpoint: Endpoint, on loop: any EventLoop, received: @escaping @Sendable ([UInt8]) -> Void) async throws
        -> any Channel
    {
        let upgraded = try await ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(maxFrameSize: 1 << 17) { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(FrameReceiver(received: received))
                            return true
                        }
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
                    headers.add(name: "Content-Length", value: "0")
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: endpoint.path, headers: headers)
                    let upgrade = NIOTypedHTTPClientUpgradeConfiguration(
                        upgradeRequestHead: head, upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in channel.eventLoop.makeCompletedFuture { false } })
                    let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: .init(upgradeConfiguration: upgrade))
                    return negotiated.map { ($0, channel) }
                }
            }
        let (accepted, channel) = try await upgraded.get()
        guard accepted else {
            try? await channel.close()
            throw BenchError("\(endpoint.host):\(endpoint.port)\(endpoint.path) refused the WebSocket upgrade")
        }
        return channel
    }

    /// One datagram's bytes as a client's frame (masked, as RFC 6455 asks of clients).
    static func frame(_ bytes: [UInt8], allocator: ByteBufferAllocator) -> WebSocketFrame {
        let mask = WebSocketMaskingKey.random()
        return WebSocketFrame(fin: true, opcode: .text, maskKey: mask, data: allocator.buffer(bytes: bytes))
    }

    /// Hands text frames on; answers pings (the bridge closes a WebSocket
    /// that stops answering); a close ends the channel.
    final class FrameReceiver: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame
        let received: @Sendable ([UInt8]) -> Void

        init(received: @escaping @Sendable ([UInt8]) -> Void) { self.received = received }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .text, .binary:
                received(Array(buffer: frame.unmaskedData))
            case .ping:
                let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
                context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
            case .connectionClose:
                context.close(promise: nil)
            default:
                break
            }
        }
    }
}
