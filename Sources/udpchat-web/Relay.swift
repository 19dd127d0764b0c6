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
struct Relay: Sendable {
    let settings: WebSettings
    let gate: ConnectionGate
    let metrics: WebMetrics
    let logger: Logger

    typealias Datagrams = NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>

    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, eventLoop: any EventLoop, peer: String) async throws {
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
        let upstream = settings.upstream
        let udp = try await DatagramBootstrap(group: eventLoop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: WireSpec.maxDatagram + 1))
            .bind(host: upstream.protocol == .inet6 ? "::" : "0.0.0.0", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture { try Datagrams(wrappingChannelSynchronously: channel) }
            }
        let activity = Activity()
        try await udp.executeThenClose { datagrams, sender in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await toBrowser(datagrams, outbound: outbound, activity: activity) }
                group.addTask { try await toEdge(inbound, sender: sender, outbound: outbound, activity: activity, peer: peer) }
                group.addTask { try await closeWhenIdle(outbound: outbound, activity: activity) }
                // The first to end ends the connection: the browser left, a
                // frame broke a rule, or it fell idle.
                _ = try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Closes a WebSocket opened from a page of a site not allowed.
    func refuse(origin: String, outbound: WebSocketOutboundWriter, peer: String) async throws {
        metrics.originRefused.increment()
        logger.notice("connection refused: origin not allowed", metadata: .fields(.address(peer), .value("origin", origin)))
        // A close reason has room for 123 bytes; an origin is ASCII.
        let shown = String(String.UnicodeScalarView(origin.unicodeScalars.filter(\.isASCII).prefix(80)))
        try await outbound.close(.policyViolation, reason: "pages from \(shown) may not connect here")
    }

    private func toBrowser(
        _ datagrams: NIOAsyncChannelInboundStream<AddressedEnvelope<ByteBuffer>>, outbound: WebSocketOutboundWriter, activity: Activity
    ) async throws {
        for try await envelope in datagrams {
            guard envelope.remoteAddress == settings.upstream else {
                metrics.strayDatagrams.increment()
                continue
            }
            activity.touch()
            // The edge writes JSON, so the bytes go out as they came, as text.
            try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: envelope.data)))
            metrics.framesOut.increment()
        }
    }

    private func toEdge(
        _ inbound: WebSocketInboundStream, sender: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>,
        outbound: WebSocketOutboundWriter, activity: Activity, peer: String
    ) async throws {
        var rules = FrameGuard(maxBytes: settings.maxFrameBytes, rate: settings.messagesPerSecond, now: MonotonicClock.now())
        // Messages up to a UDP datagram are read whole, so that one just
        // over the edge's limit is refused with a reason; beyond that the
        // frame decoder closes the connection with 1009 itself.
        for try await message in inbound.messages(maxSize: WireSpec.maxDatagram) {
            let payload: ByteBuffer
            switch message {
            case .text(let text): payload = ByteBuffer(string: text)
            case .binary(let bytes): payload = bytes
            }
            do {
                try rules.admit(Array(buffer: payload), now: MonotonicClock.now())
            } catch {
                metrics.closed(error.metric)
                logger.notice("connection closed", metadata: .fields(.address(peer), .reason(error.reason)))
                try await outbound.close(.init(codeNumber: Int(error.code)), reason: error.reason)
                return
            }
            activity.touch()
            try await sender.write(AddressedEnvelope(remoteAddress: settings.upstream, data: payload))
            metrics.framesIn.increment()
        }
    }

    private func closeWhenIdle(outbound: WebSocketOutboundWriter, activity: Activity) async throws {
        let limit = settings.inactivity.nanoseconds
        while true {
            let idle = MonotonicClock.now() &- activity.last
            if idle >= limit { break }
            try await Task.sleep(for: .nanoseconds(limit - idle))
        }
        metrics.closed("idle")
        try await outbound.close(.normalClosure, reason: "nothing relayed for \(settings.inactivity.components.seconds) s")
    }
}

/// When something last went through, either way (monotonic nanoseconds).
private final class Activity: Sendable {
    private let stamp = Atomic<UInt64>(MonotonicClock.now())
    var last: UInt64 { stamp.load(ordering: .relaxed) }
    func touch() { stamp.store(MonotonicClock.now(), ordering: .relaxed) }
}
