import ChatClient
import ChatWire
import Foundation
import NIOCore
import NIOPosix
import TestSupport

/// What happens to the datagrams on a path, decided by a seeded generator
/// so a failing run can be repeated. Pure.
struct Impairments: Sendable {
    var drop = 0.0
    var duplicate = 0.0
    /// Share of datagrams held back by `reorderDelay`, so later ones overtake them.
    var reorder = 0.0
    var reorderDelay: ClosedRange<Int> = 5...40  // milliseconds
    /// Every datagram's delay.
    var delay: ClosedRange<Int> = 0...2  // milliseconds
    /// Share of datagrams with one byte flipped.
    var corrupt = 0.0

    /// The copies to deliver for one datagram: a delay each, and whether to corrupt it.
    func decide(_ random: inout SplitMix64) -> [(delayMs: Int, corrupt: Bool)] {
        if random.chance(drop) { return [] }
        let copies = random.chance(duplicate) ? 2 : 1
        return (0..<copies).map { _ in
            var delay = Int.random(in: delay, using: &random)
            if random.chance(reorder) { delay += Int.random(in: reorderDelay, using: &random) }
            return (delay, random.chance(corrupt))
        }
    }
}

/// A UDP proxy for tests that drops, duplicates, reorders, delays and
/// corrupts datagrams in both directions. Each client address gets its own
/// upstream socket, as the WebSocket connector does, so the server sees
/// one address per client.
final class LossyProxy: @unchecked Sendable {
    let port: Int
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let loop: any EventLoop
    private var upstream: SocketAddress
    private let impairments: Impairments
    // Loop-confined state.
    private var listener: (any Channel)!
    private var upstreams: [SocketAddress: any Channel] = [:]
    private var random: SplitMix64
    private var toServer: Set<[UInt8]> = []
    private(set) var counts = (forwarded: 0, dropped: 0, duplicated: 0, corrupted: 0)

    init(upstream: SocketAddress, impairments: Impairments, seed: UInt64) async throws {
        self.upstream = upstream
        self.impairments = impairments
        random = SplitMix64(seed: seed)
        loop = group.next()
        let relay = Relay()
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(relay) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
        relay.onDatagram = { [unowned self] envelope in self.fromClient(envelope) }
        try await loop.submit { self.listener = channel }.get()
    }

    /// Whether this exact datagram reached the server (after the impairments).
    func delivered(toServer datagram: [UInt8]) async -> Bool {
        (try? await loop.submit { self.toServer.contains(datagram) }.get()) ?? false
    }

    /// Waits until one of `client`'s ACKs has got through to the server (the
    /// server then holds it to commit order), at most `limit`.
    func waitUntilAcknowledged(_ client: ChatClient, within limit: Duration = .seconds(60)) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            for ack in client.recordedAcks where await delivered(toServer: ack) { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// The counts so far, read on the proxy's loop.
    func currentCounts() async -> (forwarded: Int, dropped: Int, duplicated: Int, corrupted: Int) {
        (try? await loop.submit { self.counts }.get()) ?? (0, 0, 0, 0)
    }

    /// Sends `datagram` to `port` on 127.0.0.1 from the proxy's own
    /// address: to the client it comes from its server.
    func inject(_ datagram: [UInt8], toClientPort port: Int) async throws {
        let target = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        try await loop.submit {
            self.listener.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: datagram)), promise: nil)
        }.get()
    }

    /// What clients send from now on goes to `address` (a load balancer
    /// moving them to another server); replies still reach them.
    func route(to address: SocketAddress) async throws {
        try await loop.submit { self.upstream = address }.get()
    }

    func close() async {
        try? await group.shutdownGracefully()
    }

    private func fromClient(_ envelope: AddressedEnvelope<ByteBuffer>) {
        let client = envelope.remoteAddress
        if let channel = upstreams[client] {
            impair(envelope.data, on: channel, to: upstream, recordAsServerBound: true)
            return
        }
        let relay = Relay()
        relay.onDatagram = { [unowned self] reply in
            self.impair(reply.data, on: self.listener, to: client, recordAsServerBound: false)
        }
        DatagramBootstrap(group: loop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(relay) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .whenSuccess { channel in
                self.upstreams[client] = channel
                self.impair(envelope.data, on: channel, to: self.upstream, recordAsServerBound: true)
            }
    }

    private func impair(_ data: ByteBuffer, on channel: any Channel, to destination: SocketAddress, recordAsServerBound: Bool) {
        let copies = impairments.decide(&random)
        if copies.isEmpty { counts.dropped += 1 }
        if copies.count > 1 { counts.duplicated += 1 }
        for copy in copies {
            var bytes = Array(data.readableBytesView)
            if copy.corrupt, !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] ^= UInt8.random(in: 1...255, using: &random)
                counts.corrupted += 1
            }
            let datagram = bytes
            loop.scheduleTask(in: .milliseconds(Int64(copy.delayMs))) { [self] in
                if recordAsServerBound { toServer.insert(datagram) }
                counts.forwarded += 1
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(bytes: datagram)), promise: nil)
            }
        }
    }

    /// Hands every datagram a channel receives to `onDatagram`, on the loop.
    private final class Relay: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        var onDatagram: ((AddressedEnvelope<ByteBuffer>) -> Void)?
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { onDatagram?(Self.unwrapInboundIn(data)) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {}
    }
}
