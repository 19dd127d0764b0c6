import ChatLog
import ChatWire
import Foundation
import IPC
import IPCMessages
import Logging
import NIOCore
import Ops

/// The rim around the edge's ``EdgeMachine``: it feeds the machine the
/// datagrams the UDP channel reads, the events the store publishes, the
/// answers of udpchat-keys and udpchat-store, and the passing of time; and
/// it carries out what the machine returns. Everything here runs on one
/// event loop: the machine is touched nowhere else.
///
/// Datagrams written while a batch of reads is handled are flushed once at
/// the end of the batch (one `sendmmsg`), the rest at the end of each event.
final class EdgeServer: @unchecked Sendable {
    /// How often housekeeping runs when no retransmission is due sooner.
    static let tickInterval: TimeAmount = .milliseconds(100)
    /// When the process's memory was last read (once a second, for the memory limit).
    private var lastMemoryReading: UInt64 = 0

    let settings: EdgeSettings
    let loop: any EventLoop
    let keys: KeysClient
    let store: StoreClient
    let logger: Logger
    private var channel: (any Channel)?
    private var machine: EdgeMachine
    private var output = EdgeOutput()
    private var handshakeWindow = HandshakeWindow()
    private var housekeeping: RepeatedTask?
    private var timer: Scheduled<Void>?
    private var timerDue: UInt64 = .max
    /// Inside a batch of reads: datagrams are written, and flushed at its end.
    private var reading = false

    init(settings: EdgeSettings, loop: any EventLoop, keys: KeysClient, store: StoreClient, logger: Logger) {
        self.settings = settings
        self.loop = loop
        self.keys = keys
        self.store = store
        self.logger = logger
        machine = EdgeMachine(settings: settings, logger: logger)
    }

    /// Starts serving on `channel`: loads the sessions active lately and
    /// starts the housekeeping tick.
    func start(channel: any Channel) {
        loop.execute { [self] in
            self.channel = channel
            machine.start(.now(), &output)
            carryOut()
            channel.setOption(.autoRead, value: true).whenFailure { [self] error in
                logger.error("reading datagrams could not start", metadata: .fields(.error(error)))
            }
            housekeeping = loop.scheduleRepeatedTask(initialDelay: Self.tickInterval, delay: Self.tickInterval) { [self] _ in
                tick()
            }
        }
    }

    // MARK: - Events in

    /// One datagram (from the channel handler, on the loop).
    func received(_ bytes: [UInt8], from address: SocketAddress) {
        reading = true
        guard let peer = PeerAddress(address) else { return }
        machine.receive(bytes, from: peer, .now(), &output)
        carryOut()
    }

    /// The channel handler read its last datagram for now: what the reads
    /// wrote goes out, then the datagrams the machine queued are read.
    func readComplete() {
        reading = false
        channel?.flush()
        readQueued()
    }

    /// Implementation constants: items of queued work (handshakes, mostly)
    /// done in one turn of the event loop, after that turn's reads; and how
    /// long the next share waits, so that the loop reads the socket first
    /// (a task submitted now would run in the same turn, before any read).
    static let queuedPerTurn = 16
    static let yieldToReads: TimeAmount = .microseconds(20)
    private var queuedTurnScheduled = false

    /// Does one turn's share of the work the machine queued; the rest
    /// waits for a later turn.
    private func readQueued() {
        let more = machine.readQueued(budget: Self.queuedPerTurn, .now(), &output)
        carryOut()
        if more { scheduleQueuedTurn() }
    }

    /// A share of the queued work in a later turn of the loop, after its reads.
    private func scheduleQueuedTurn() {
        guard !queuedTurnScheduled else { return }
        queuedTurnScheduled = true
        loop.scheduleTask(in: Self.yieldToReads) { [self] in
            queuedTurnScheduled = false
            readQueued()
        }
    }

    /// An event published by the store; called on the ZeroMQ thread.
    func eventArrived(_ body: [UInt8]) {
        loop.execute { [self] in
            do {
                machine.published(try IPCEvent(serializedBytes: body), .now(), &output)
            } catch {
                logger.warning("undecodable event dropped", metadata: .fields(.error(error)))
            }
            carryOut()
        }
    }

    private func tick() {
        let now = EdgeTime.now()
        expireWaitingHandshakes(now)
        if now.monotonic &- lastMemoryReading >= 1_000_000_000 {
            lastMemoryReading = now.monotonic
            machine.memoryInUse = ProcessMemory.residentBytes() ?? 0
        }
        machine.tick(now, &output)
        carryOut()
    }

    /// Handshakes that waited for a request to keys as long as a request
    /// may take fail as one would (their answers are queued work, done now).
    private func expireWaitingHandshakes(_ now: EdgeTime) {
        let deadline = keys.timeout.nanoseconds
        let expired = handshakeWindow.expired(waitingSince: now.monotonic > deadline ? now.monotonic - deadline : 0)
        guard !expired.isEmpty else { return }
        let late = RPCError(.timeout, "udpchat-keys took no request of these handshakes within \(deadline / 1_000_000) ms")
        for held in expired { machine.keysAnswered(held.call, .failure(late), now, &output) }
        readQueued()
    }

    // MARK: - Carrying out

    /// NIO's address of each client written to lately: made once, not for
    /// every copy (a SocketAddress holds its bytes in a heap box).
    private var socketAddresses: [PeerAddress: SocketAddress] = [:]
    /// Implementation constant: addresses remembered before starting over.
    static let socketAddressCache = 65_536

    private func socketAddress(_ address: PeerAddress) -> SocketAddress {
        if let known = socketAddresses[address] { return known }
        if socketAddresses.count >= Self.socketAddressCache { socketAddresses.removeAll(keepingCapacity: true) }
        let made = address.socketAddress
        socketAddresses[address] = made
        return made
    }

    private func carryOut() {
        if let channel, !output.datagrams.isEmpty {
            for datagram in output.datagrams {
                let envelope = AddressedEnvelope(remoteAddress: socketAddress(datagram.address), data: channel.allocator.buffer(bytes: datagram.bytes))
                channel.write(envelope, promise: nil)
            }
            if !reading { channel.flush() }
        }
        let (handshakes, others) = output.keysRequests()
        for (request, calls) in others { callKeys(request, calls) }
        sendHandshakes(handshakeWindow.add(handshakes, now: MonotonicClock.now()))
        for (request, call) in output.storeCalls {
            store.call(request) { [self] result in
                loop.execute { [self] in
                    machine.storeAnswered(call, result, .now(), &output)
                    carryOut()
                }
            }
        }
        if output.releaseFreeMemory { MemoryTrim.releaseFreeMemory() }
        output.removeAll()
        armTimer()
    }

    /// A call to keys other than handshakes; its answer goes to the machine.
    private func callKeys(_ request: IPCKeysRequest, _ calls: [KeysCall]) {
        keys.call(request) { [self] result in
            loop.execute { [self] in
                for (call, answer) in zip(calls, EdgeOutput.keysAnswers(result, for: calls)) {
                    machine.keysAnswered(call, answer, .now(), &output)
                }
                carryOut()
                readQueued()
            }
        }
    }

    /// Requests of handshakes from the window; each answer frees its place.
    private func sendHandshakes(_ requests: [HandshakeWindow.Sending]) {
        for (request, handshakes) in requests {
            keys.call(request) { [self] result in
                loop.execute { [self] in handshakesAnswered(handshakes, result) }
            }
        }
    }

    private func handshakesAnswered(_ handshakes: [HandshakeWindow.Handshake], _ result: Result<IPCKeysResponse, RPCError>) {
        let now = MonotonicClock.now()
        if handshakes.count > 1 && HandshakeWindow.refusesTogether(result) {
            // An older keys: these go again, one a request, with those after them.
            if now >= handshakeWindow.aloneUntil {
                logger.warning(
                    "udpchat-keys refuses several handshakes in one request (a version older than this edge): sending them one at a time",
                    metadata: .fields(.peer("udpchat-keys")))
            }
            sendHandshakes(handshakeWindow.refusedTogether(handshakes, now: now))
            return
        }
        // The handshakes that waited go first, so keys signs them while these are
        // answered; if keys did not answer this request, they fail with it.
        if case .failure(let error) = result, error.code == .timeout || error.code == .shutdown {
            for held in handshakeWindow.failed() { machine.keysAnswered(held.call, result, .now(), &output) }
        } else {
            sendHandshakes(handshakeWindow.answered(now: now))
        }
        let calls = handshakes.map(\.call)
        for (call, answer) in zip(calls, EdgeOutput.keysAnswers(result, for: calls)) {
            machine.keysAnswered(call, answer, .now(), &output)
        }
        carryOut()
        // A share of the queued work now (these answers, mostly); more waits for a later turn.
        readQueued()
    }

    /// Schedules a tick for the machine's next retransmission when it is
    /// sooner than the one already scheduled (the housekeeping tick covers
    /// the rest).
    private func armTimer() {
        guard let due = machine.nextDeadline() else { return }
        let now = MonotonicClock.now()
        if timer != nil && timerDue <= due { return }
        guard due > now else {
            // Already due: at the end of this turn of the loop, not recursively.
            if timerDue != 0 {
                timer?.cancel()
                timerDue = 0
                timer = loop.scheduleTask(in: .zero) { [self] in fire() }
            }
            return
        }
        timer?.cancel()
        timerDue = due
        timer = loop.scheduleTask(in: .nanoseconds(Int64(due - now))) { [self] in fire() }
    }

    private func fire() {
        timer = nil
        timerDue = .max
        tick()
    }

    // MARK: - Shutdown and readiness

    /// Graceful shutdown: from now on only ACKs are taken. Waits (at most
    /// `limit`) for the requests in flight to be answered, the handshakes to
    /// be signed and the copies sent to acknowledging clients to be
    /// confirmed, then reports every session's liveness, address and
    /// cursors to the store, so the next edge resumes where this one stopped.
    func drain(limit: Duration = .seconds(5)) async {
        let deadline = ContinuousClock.now + limit
        _ = try? await loop.submit { [self] in machine.startDraining() }.get()
        var (busy, unconfirmed) = (false, 0)
        repeat {
            (busy, unconfirmed) = (try? await loop.submit { [self] in machine.drainStatus }.get()) ?? (false, 0)
            if !busy && unconfirmed == 0 { break }
            try? await Task.sleep(for: .milliseconds(10))
        } while ContinuousClock.now < deadline
        if busy || unconfirmed > 0 {
            logger.warning("drain limit reached", metadata: .fields(.value("unconfirmed_copies", "\(unconfirmed)"), .value("requests_in_flight", "\(busy)")))
        } else {
            logger.info("drained: every request answered, every copy to an acknowledging client confirmed")
        }
        let reports: [IPCStoreRequest] =
            (try? await loop.submit { [self] in
                housekeeping?.cancel()
                timer?.cancel()
                var final = EdgeOutput()
                machine.finalReport(.now(), &final)
                return final.storeCalls.map(\.request)
            }.get()) ?? []
        let remaining = max(.milliseconds(500), ContinuousClock.now.duration(to: deadline) + .seconds(2))
        _ = try? await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for request in reports { _ = try await self.store.call(request) }
            }
            group.addTask { try await Task.sleep(for: remaining) }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Whether udpchat-keys and udpchat-store answer now (for `/readyz`).
    func peersRespond(within timeout: Duration) async -> (keys: Bool, store: Bool) {
        let quickKeys = KeysClient(rpc: keys.rpc, timeout: timeout)
        let quickStore = StoreClient(rpc: store.rpc, timeout: timeout)
        async let keysAnswer = try? quickKeys.call(.identity)
        async let storeAnswer = try? quickStore.call(.ping)
        let (keysResult, storeResult) = await (keysAnswer, storeAnswer)
        let storeOK: Bool
        if case .done? = storeResult?.result { storeOK = true } else { storeOK = false }
        return (keysResult?.identity.publicKeyDer.isEmpty == false, storeOK)
    }
}
