import ChatLog
import ChatWire
import Logging
import NIOCore

/// Carries datagrams from the UDP channel to the ``EdgeServer``.
final class DatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let server: EdgeServer
    let logger: Logger

    init(server: EdgeServer, logger: Logger) {
        self.server = server
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        let bytes = envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) ?? []
        server.received(bytes, from: envelope.remoteAddress)
    }

    /// The end of a batch of reads: what the batch wrote goes out at once.
    func channelReadComplete(context: ChannelHandlerContext) {
        server.readComplete()
    }

    /// A UDP socket has no connection to lose: log and keep serving.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.warning("UDP socket error", metadata: .fields(.error(error)))
    }
}
