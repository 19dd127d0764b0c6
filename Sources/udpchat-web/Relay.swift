import ChatLog
import ChatWire
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization

/// The connections open at once, against their limit.
final class ConnectionGate: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Takes a place; false (and nothing taken) when all are taken.
    func enter() -> Bool {
        if open.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        open.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    func leave() { open.wrappingSubtract(1, ordering: .relaxed) }

    var count: Int { open.load(ordering: .relaxed) }
}

/// One WebSocket's relay, as the original connector's: every frame the
/// browser sends goes to the edge as one datagram from a UDP socket of
/// this WebSocket's own, so the edge sees each browser tab as its own
/// source port; every datagram the edge sends back comes to the browser
/// as one text frame. The payloads are end-to-end ciphertext and
/// handshakes the relay does not open. Unlike the original, datagrams
/// from anyone but the edge are dropped, and frames are checked
/// (`FrameGuard`) before they are relayed.
///
/// Frames and datagrams are relayed by channel handlers on the
/// WebSocket's event loop, where the UDP socket lives too: a frame goes
/// out as a datagram in the same turn of the loop it came in, with no
/// task in between (docs/performance.md, "The web bridge"). The
/// WebSocket's async side keeps the handshake, pings and closing, and
/// the rare frame that reaches it (a message in fragments).
struct Relay: Sendable {
    let settings: WebSettings
    let gate: ConnectionGate
    let metrics: WebMetrics
    let logger: Logger

    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, channel: any Channel, peer: String) async throws {
        guard gate.enter() else {
            metrics.overLimit.increment()
            logger.notice("connection refused: at the limit", metadata: .fields(.address(peer), .count(gate.limit)))
            try await outbound.close(.init(codeNumber: 1013), reason: "the bridge has its \(gate.limit) connections; try again later")
            return
        }
        metrics.accepted.increment()
        metrics.connections.record(gate.count)
        defer {
            gate.leave()
            metrics.connections.record(gate.count)
        }
        let closer = Closer(webSocket: channel, outbound: outbound)
        let activity = Activity()
        let (settings, metrics, logger) = (settings, metrics, logger)
        // First in the pipeline, between the frame decoder and the
        // WebSocket's async side, so that few frames go the slow way; it
        // holds what comes before the UDP socket is there.
        let toEdge = try await channel.eventLoop.submit {
            let handler = ToEdge(settings: settings, metrics: metrics, activity: activity, closer: closer, peer: peer, logger: logger)
            let decoder = try channel.pipeline.syncOperations.context(handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(handler, position: .after(decoder.handler))
            return NIOLoopBound(handler, eventLoop: channel.eventLoop)
        }.get()
        let udp = try await DatagramBootstrap(group: channel.eventLoop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: WireSpec.maxDatagram + 1))
            .channelInitializer { udp in
                udp.eventLoop.makeCompletedFuture {
                    try udp.pipeline.syncOperations.addHandler(
                        ToBrowser(webSocket: channel, upstream: settings.upstream, metrics: metrics, activity: activity, closer: closer))
                }
            }
            .bind(host: settings.upstream.protocol == .inet6 ? "::" : "0.0.0.0", port: 0).get()
        do {
            try await channel.eventLoop.submit { toEdge.value.attach(udp) }.get()
            // Frames that reached the async side (a message in fragments, or
            // one that came before the handler was in place) go the same way,
            // on the loop. Those that came before may so pass a later one;
            // datagrams may arrive in any order anyway, and the protocol
            // allows for it.
            for try await message in inbound.messages(maxSize: WireSpec.maxDatagram) {
                let payload: ByteBuffer
                switch message {
                case .text(let text): payload = ByteBuffer(string: text)
                case .binary(let bytes): payload = bytes
                }
                try await channel.eventLoop.submit {
                    toEdge.value.relay(payload)
                    toEdge.value.flush()
                }.get()
            }
        } catch {
            try? await udp.close()
            throw error
        }
        try? await udp.close()
    }

    /// Closes a WebSocket opened from a page of a site not allowed.
    func refuse(origin: String, outbound: WebSocketOutboundWriter, peer: String) async throws {
        metrics.originRefused.increment()
        logger.notice("connection refused: origin not allowed", metadata: .fields(.address(peer), .value("origin", origin)))
        // A close reason has room for 123 bytes; an origin is ASCII.
        let shown = String(String.UnicodeScalarView(origin.unicodeScalars.filter(\.isASCII).prefix(80)))
        try await outbound.close(.policyViolation, reason: "pages from \(shown) may not connect here")
    }
}

/// Browser to edge: each whole text or binary frame, checked, goes out as
/// a datagram; everything else (control frames, fragments) goes on to the
/// WebSocket's async side. It also closes the WebSocket when it falls idle.
private final class ToEdge: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    private var udp: (any Channel)?
    /// Frames that came before the UDP socket was bound.
    private var held: [ByteBuffer] = []
    let settings: WebSettings
    let metrics: WebMetrics
    let activity: Activity
    let closer: Closer
    let peer: String
    let logger: Logger
    private var rules: FrameGuard
    private var unflushed = false
    private var idleCheck: Scheduled<Void>?

    init(settings: WebSettings, metrics: WebMetrics, activity: Activity, closer: Closer, peer: String, logger: Logger) {
        self.settings = settings
        self.metrics = metrics
        self.activity = activity
        self.closer = closer
        self.peer = peer
        self.logger = logger
        rules = FrameGuard(maxBytes: settings.maxFrameBytes, rate: settings.messagesPerSecond, now: MonotonicClock.now())
    }

    /// The UDP socket is bound: what was held goes out, in order.
    func attach(_ udp: any Channel) {
        self.udp = udp
        for payload in held { send(payload, on: udp) }
        held = []
        flush()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        scheduleIdleCheck(on: context.eventLoop, after: settings.inactivity.nanoseconds)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleCheck?.cancel()
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.fin, frame.opcode == .text || frame.opcode == .binary else {
            context.fireChannelRead(data)
            return
        }
        relay(frame.unmaskedData)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush()
        context.fireChannelReadComplete()
    }

    /// Checks one frame and sends it on; a frame that breaks a rule
    /// closes the WebSocket, and nothing after it is relayed.
    func relay(_ payload: ByteBuffer) {
        guard !closer.isClosing else { return }
        do {
            try rules.admit(Array(buffer: payload), now: MonotonicClock.now())
        } catch {
            metrics.closed(error.metric)
            logger.notice("connection closed", metadata: .fields(.address(peer), .reason(error.reason)))
            closer.close(.init(codeNumber: Int(error.code)), reason: error.reason)
            return
        }
        activity.touch()
        guard let udp else {
            held.append(payload)
            return
        }
        send(payload, on: udp)
    }

    private func send(_ payload: ByteBuffer, on udp: any Channel) {
        udp.write(AddressedEnvelope(remoteAddress: settings.upstream, data: payload), promise: nil)
        unflushed = true
        metrics.framesIn.increment()
    }

    func flush() {
        guard unflushed, let udp else { return }
        unflushed = false
        udp.flush()
    }

    private func scheduleIdleCheck(on loop: any EventLoop, after delay: UInt64) {
        // On the loop this handler lives on, like everything it touches.
        idleCheck = loop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(delay))) { [self] in
            let limit = settings.inactivity.nanoseconds
            let idle = MonotonicClock.now() &- activity.last
            guard idle >= limit else {
                scheduleIdleCheck(on: loop, after: limit - idle)
                return
            }
            metrics.closed("idle")
            closer.close(.normalClosure, reason: "nothing relayed for \(settings.inactivity.components.seconds) s")
        }
    }
}

/// Edge to browser: each datagram from the edge becomes one text frame,
/// written straight into the WebSocket's pipeline. A browser that does
/// not read loses datagrams rather than growing the bridge's memory: the
/// edge sends unacknowledged broadcasts again.
private final class ToBrowser: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let webSocket: any Channel
    let upstream: SocketAddress
    let metrics: WebMetrics
    let activity: Activity
    let closer: Closer
    private var unflushed = false

    init(webSocket: any Channel, upstream: SocketAddress, metrics: WebMetrics, activity: Activity, closer: Closer) {
        self.webSocket = webSocket
        self.upstream = upstream
        self.metrics = metrics
        self.activity = activity
        self.closer = closer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.remoteAddress == upstream else {
            metrics.strayDatagrams.increment()
            return
        }
        // Nothing follows a close frame.
        guard !closer.isClosing else { return }
        guard webSocket.isWritable else {
            metrics.unread.increment()
            return
        }
        activity.touch()
        // The edge writes JSON, so the bytes go out as they came, as text.
        // A copy of their own size: a slice would keep the whole receive
        // buffer (64 KiB) alive while it waits to be sent, out of sight of
        // the WebSocket's writability.
        var text = context.channel.allocator.buffer(capacity: envelope.data.readableBytes)
        text.writeImmutableBuffer(envelope.data)
        webSocket.write(WebSocketFrame(fin: true, opcode: .text, data: text), promise: nil)
        unflushed = true
        metrics.framesOut.increment()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if unflushed {
            unflushed = false
            webSocket.flush()
        }
        context.fireChannelReadComplete()
    }
}

/// Closes the WebSocket once, with a code and reason, from the loop. A
/// client that does not answer the close frame within `answerLimit` has
/// its connection dropped: its place and its UDP socket are not held for it.
private final class Closer: Sendable {
    let webSocket: any Channel
    let outbound: WebSocketOutboundWriter
    private let closing = Atomic<Bool>(false)

    /// Implementation constant: the time a client gets to answer a close,
    /// as the WebSocket library gives one when the bridge stops.
    static let answerLimit: TimeAmount = .seconds(10)

    init(webSocket: any Channel, outbound: WebSocketOutboundWriter) {
        self.webSocket = webSocket
        self.outbound = outbound
    }

    var isClosing: Bool { closing.load(ordering: .relaxed) }

    func close(_ code: WebSocketErrorCode, reason: String) {
        guard !closing.exchange(true, ordering: .relaxed) else { return }
        Task { [outbound] in try? await outbound.close(code, reason: reason) }
        let webSocket = webSocket
        webSocket.eventLoop.scheduleTask(in: Self.answerLimit) { webSocket.close(promise: nil) }
    }
}

/// When something last went through, either way (monotonic nanoseconds).
private final class Activity: Sendable {
    private let stamp = Atomic<UInt64>(MonotonicClock.now())
    var last: UInt64 { stamp.load(ordering: .relaxed) }
    func touch() { stamp.store(MonotonicClock.now(), ordering: .relaxed) }
}
