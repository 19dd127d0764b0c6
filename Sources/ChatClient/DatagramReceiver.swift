import NIOCore

/// Hands each datagram a UDP channel reads to `receive`: its bytes and the
/// sender's address. The client and `udpchat bench` read their sockets
/// through it.
public final class DatagramReceiver: ChannelInboundHandler, Sendable {
    public typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let receive: @Sendable ([UInt8], SocketAddress) -> Void

    public init(_ receive: @escaping @Sendable ([UInt8], SocketAddress) -> Void) { self.receive = receive }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        receive(envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) ?? [], envelope.remoteAddress)
    }

    /// A UDP socket has no connection to lose: a failed read or write
    /// loses that datagram, which the protocol's retries cover.
    public func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}
