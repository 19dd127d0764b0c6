import ChatWire
import NIOCore
import NIOPosix

/// A UDP socket on loopback in the edge's place: it keeps every datagram
/// it receives, with its source, and sends what a test asks it to. With
/// it, a test sees exactly the bytes udpchat-web relays.
final class StandInEdge: Sendable {
    let channel: any Channel
    let port: Int
    private let received = MutexBox<[(bytes: [UInt8], from: SocketAddress)]>([])

    init() async throws {
        let received = received
        channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Recorder { bytes, from in received.mutate { $0.append((bytes, from)) } })
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress?.port ?? 0
    }

    var datagrams: [(bytes: [UInt8], from: SocketAddress)] { received.value }

    /// Sends `bytes` to `address` from this socket.
    func send(_ bytes: [UInt8], to address: SocketAddress) async throws {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: bytes)))
    }

    func close() async { try? await channel.close() }

    private final class Recorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let record: @Sendable ([UInt8], SocketAddress) -> Void
        init(_ record: @escaping @Sendable ([UInt8], SocketAddress) -> Void) { self.record = record }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            record(Array(buffer: envelope.data), envelope.remoteAddress)
        }
    }
}
