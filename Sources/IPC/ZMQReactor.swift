import ChatLog
import ChatWire
import CZeroMQ
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A socket served by a ``ZMQReactor``. Every method is called on the
/// reactor's thread only.
protocol ReactorDriver: AnyObject {
    var socket: ZMQSocket { get }
    /// Whether the driver has messages the socket could not take yet; the
    /// reactor then also waits for the socket to become writable.
    var wantsWritable: Bool { get }
    /// The socket has messages to read.
    func readable(now: UInt64)
    /// Send what was queued, fail what expired; returns the next time the
    /// driver must run again, if any.
    func service(now: UInt64) -> UInt64?
    /// The reactor is stopping: fail what is pending, then close the socket.
    func stop()
}

/// The one thread that owns a process's ZeroMQ sockets (ZeroMQ sockets are
/// not thread-safe). It polls them with `zmq_poll`; other threads hand it
/// work through each driver's locked queue and wake it through a pipe,
/// so no caller ever blocks on a socket.
public final class ZMQReactor: @unchecked Sendable {
    public let context: ZMQContext
    private let name: String
    /// A non-blocking pipe: a byte written to `wakeWrite` wakes `zmq_poll`.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let state = Mutex(State())
    private var drivers: [ReactorDriver] = []  // reactor thread only, after start
    private let finished = DispatchSemaphore(value: 0)
    /// When the thread last went round its loop (it does at least once a second).
    private let lastTurn = Atomic<UInt64>(0)

    private struct State {
        var started = false
        var stopping = false
        var pendingDrivers: [ReactorDriverBox] = []
    }

    public init(context: ZMQContext, name: String) {
        self.context = context
        self.name = name
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0, "pipe failed: \(errno)")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        // Before any CURVE server socket binds: their handshakes ask it.
        if let security = context.security, !security.servers.isEmpty {
            do {
                add(try ZAPHandler(context: context, security: security, logger: Logger(label: "udpchat-plane")))
                context.zapBound.store(true, ordering: .releasing)
            } catch {
                // CURVE sockets then refuse to bind, saying so.
                Logger(label: "udpchat-plane").error("cannot bind the ZAP handler", metadata: .fields(.error(error)))
            }
        }
    }

    deinit {
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
    }

    /// Hands a driver to the reactor. Its socket must have been created on
    /// this thread and not be used here again.
    func add(_ driver: ReactorDriver) {
        state.withLock { $0.pendingDrivers.append(ReactorDriverBox(driver)) }
        wakeUp()
    }

    /// Starts the reactor thread.
    public func start() {
        let first = state.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started
        }
        guard first else { return }
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Wakes the reactor so it services its drivers' queues.
    public func wakeUp() {
        // A full pipe already guarantees a wake-up, so EAGAIN is fine.
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)
    }

    /// Whether the thread went round its loop within `limit` (what the
    /// systemd watchdog checks): false before start and once it is stuck.
    public func isResponsive(within limit: Duration = .seconds(5)) -> Bool {
        let last = lastTurn.load(ordering: .relaxed)
        return last != 0 && MonotonicClock.now() &- last <= UInt64(limit.nanoseconds)
    }

    /// Stops the thread: pending calls fail, sockets close. Waits up to
    /// `timeout` seconds for the thread to finish.
    public func shutdown(timeout: Double = 5) {
        let wasRunning = state.withLock { state -> Bool in
            state.stopping = true
            return state.started
        }
        wakeUp()
        if wasRunning { _ = finished.wait(timeout: .now() + timeout) }
    }

    private func run() {
        var items: [zmq_pollitem_t] = []
        var nextDue: UInt64? = nil
        while true {
            let (stopping, added) = state.withLock { state in
                defer { state.pendingDrivers.removeAll() }
                return (state.stopping, state.pendingDrivers)
            }
            drivers.append(contentsOf: added.map(\.driver))
            if stopping { break }

            let now = MonotonicClock.now()
            lastTurn.store(now, ordering: .relaxed)
            nextDue = nil
            for driver in drivers {
                if let due = driver.service(now: now) { nextDue = min(nextDue ?? due, due) }
            }

            items.removeAll(keepingCapacity: true)
            items.append(zmq_pollitem_t(socket: nil, fd: wakeRead, events: Int16(ZMQ_POLLIN), revents: 0))
            for driver in drivers {
                let events = Int16(ZMQ_POLLIN) | (driver.wantsWritable ? Int16(ZMQ_POLLOUT) : 0)
                items.append(zmq_pollitem_t(socket: driver.socket.handle, fd: 0, events: events, revents: 0))
            }
            // Wake at least once a second so a missed wake-up costs at most that.
            var timeoutMs: Int = 1000
            if let due = nextDue {
                let now = MonotonicClock.now()
                timeoutMs = due <= now ? 0 : min(1000, Int((due - now + 999_999) / 1_000_000))
            }
            let rc = zmq_poll(&items, Int32(items.count), timeoutMs)
            if rc < 0 {
                if zmq_errno() == EINTR { continue }
                // Only a closed socket can make zmq_poll fail here; retry after a pause.
                usleep(10_000)
                continue
            }
            if items[0].revents & Int16(ZMQ_POLLIN) != 0 {
                var drain = [UInt8](repeating: 0, count: 256)
                while Glibc.read(wakeRead, &drain, drain.count) > 0 {}
            }
            let readAt = MonotonicClock.now()
            for (i, driver) in drivers.enumerated() where items[i + 1].revents & Int16(ZMQ_POLLIN) != 0 {
                driver.readable(now: readAt)
            }
        }
        for driver in drivers { driver.stop() }
        drivers.removeAll()
        finished.signal()
    }
}

/// Carries a driver into the reactor's locked state; the driver is used on
/// the reactor thread only after it is handed over.
private struct ReactorDriverBox: @unchecked Sendable {
    let driver: ReactorDriver
    init(_ driver: ReactorDriver) { self.driver = driver }
}
